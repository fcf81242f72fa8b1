"""The shell every fleetbox-db command runs in: the global options' App, one clean error
line for every FleetboxError, the library's log records on stderr, and `--json`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import click

from fleetbox_db import FleetboxError
from fleetbox_db.cli import text

if TYPE_CHECKING:
    from fleetbox_db import Store

__all__ = [
    "PROG",
    "App",
    "CommandError",
    "ErrorLines",
    "json_flag",
    "parse_now",
    "print_version",
    "setup_logging",
]

PROG: Final = "fleetbox-db"
F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A problem the user must act on: one line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        message = " ".join(self.format_message().splitlines())
        click.echo(f"{PROG}: error: {message}", file=file, err=True)


class ErrorLines(click.Group):
    """A group whose FleetboxError (or OSError) becomes one CommandError line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FleetboxError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click's main() quietly handles `fleetbox-db ls | head`
            raise CommandError(str(exc)) from exc


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@dataclasses.dataclass
class App:
    """What the global options chose; opens the store on first use."""

    root: Path | None
    as_json: bool = False
    now: datetime | None = None
    _store: Store | None = None

    def store(self) -> Store:
        if self._store is None:
            from fleetbox_db import Store  # on first use: `--version` and `--help` never pay

            self._store = Store.open(self.root)
            click.get_current_context().call_on_close(self._store.close)
        return self._store

    def clock(self) -> datetime:
        return self.now if self.now is not None else datetime.now(UTC)

    def emit(self, data: object, human: str | Callable[[], str]) -> None:
        """Print *data* as JSON under --json, else *human* (if non-empty)."""
        if self.as_json:
            click.echo(text.to_json(data))
            return
        shown = human() if callable(human) else human
        if shown:
            click.echo(shown)


def _set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(App).as_json = True


def json_flag(command: F) -> F:
    """`--json` after the command name too (`fleetbox-db ls --json`)."""
    option = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Machine-readable JSON on stdout.",
    )
    return option(command)


def print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    # The package's own version (a test keeps it equal to the distribution's): reading the
    # installed metadata instead would import importlib.metadata, a third of this command.
    import fleetbox_db

    click.echo(f"{PROG} {fleetbox_db.__version__}")
    ctx.exit()


def parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        now = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", ctx, param) from None
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def setup_logging(ctx: click.Context, verbose: int) -> None:
    """Send the library's log records to stderr for this invocation (warnings always)."""
    logger = logging.getLogger("fleetbox_db")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel((logging.WARNING, logging.INFO)[verbose] if verbose < 2 else logging.DEBUG)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    ctx.call_on_close(restore)
