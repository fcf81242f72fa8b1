"""The progress bar of long commands (reconcile, check, the first index build, ls on a
cold index): on a terminal only, and only once the work has run a second."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

__all__ = ["PROGRESS_DELAY", "Progress"]

PROGRESS_DELAY: Final = 1.0
"""Seconds a long command runs before its bar appears: quick runs never flash one."""


class Progress:
    """A bar on stderr, drawn only on a terminal (never when piped) and once the work has
    run PROGRESS_DELAY seconds; the library calls it with (done, total) after each batch."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.bar: ProgressBar[int] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < PROGRESS_DELAY or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(
                length=total, label=f"{self.label} {total} configs", file=sys.stderr
            )
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
