"""The library's logger, "fleetbox_db", made when the first record is.

`import logging` brings threading, traceback and string with it: about 5 ms, a tenth of
`fleetbox-db ls` on 100 members, and an answer from a settled store logs nothing. So
modules hold `log`, which imports logging only when it is used, and the CLI hooks its
stderr handler to that moment (when_made).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    import logging

__all__ = ["DEBUG", "INFO", "NAME", "WARNING", "log", "logger", "when_made"]

NAME: Final = "fleetbox_db"
#: logging's level numbers, fixed by its documentation; here so a check costs no import.
DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30

_pending: list[Callable[[logging.Logger], None]] = []


def logger() -> logging.Logger:
    """The "fleetbox_db" logger, after running what when_made() queued for it."""
    import logging

    made = logging.getLogger(NAME)
    while _pending:
        _pending.pop(0)(made)
    return made


def when_made(setup: Callable[[logging.Logger], None]) -> Callable[[], None]:
    """Run *setup* on the logger when a record is first made (now, if logging is already
    imported: someone else may log to it). Returns what cancels it if it has not run."""
    if "logging" in sys.modules:
        setup(logger())
        return lambda: None
    _pending.append(setup)

    def cancel() -> None:
        if setup in _pending:
            _pending.remove(setup)

    return cancel


class _Deferred:
    """Stands for logger(). Until something imports logging nothing can have configured
    it, so records below WARNING (logging's default level) would be dropped: they are
    dropped here without the import. A setup queued by when_made must therefore not lower
    the level (the CLI makes the logger at once for -v)."""

    __slots__ = ()

    def isEnabledFor(self, level: int) -> bool:
        if level < WARNING and "logging" not in sys.modules:
            return False
        return logger().isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(level, msg, args, kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._emit(INFO, msg, args, kwargs)

    def _emit(self, level: int, msg: object, args: tuple[object, ...], kwargs: Any) -> None:
        if self.isEnabledFor(level):
            # The record names the caller, not these two frames.
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
            logger().log(level, msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(logger(), name)


log: Final = cast("logging.Logger", _Deferred())
