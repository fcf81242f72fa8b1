"""The shell every fleetbox-db command runs in: the global options' App, one clean error
line for every FleetboxError, the library's log records on stderr, and `--json`.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import click

from fleetbox_db import FleetboxError, NoStoreError
from fleetbox_db.cli import text
from fleetbox_db.cli.progress import Progress
from fleetbox_db.logs import logger, when_made

if TYPE_CHECKING:
    import logging

    from fleetbox_db import Store

__all__ = [
    "PROG",
    "App",
    "CommandError",
    "ErrorLines",
    "INTERRUPTED",
    "json_flag",
    "parse_now",
    "parse_root",
    "pass_app",
    "print_version",
    "setup_logging",
    "warn",
]

PROG: Final = "fleetbox-db"
INTERRUPTED: Final = 130
"""Exit status after Ctrl-C: 128 + SIGINT, as shells report it."""
F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A problem the user must act on: one line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PROG}: error: {text.one_line(self.format_message())}", file=file, err=True)


def warn(message: str) -> None:
    """One warning line on stderr, control characters escaped."""
    click.echo(f"{PROG}: warning: {text.one_line(message)}", err=True)


class ErrorLines(click.Group):
    """A group whose FleetboxError (or OSError) becomes one CommandError line, and whose
    commands in ``lazy`` (name: "module:attribute") are imported only when invoked or
    listed: `ls` does not pay for the modules of create, check or log."""

    lazy: Mapping[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FleetboxError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click's main() quietly handles `fleetbox-db ls | head`
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1; a script must tell Ctrl-C from a
            # failure. Writes are atomic, so an interrupt leaves disk as it was or as done.
            click.echo(f"{PROG}: interrupted", err=True)
            ctx.exit(INTERRUPTED)


def _formatter() -> logging.Formatter:
    import logging

    class LogFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{PROG}: {record.levelname.lower()}: {text.one_line(record.getMessage())}"

    return LogFormatter()


@dataclasses.dataclass
class App:
    """What the global options chose; opens the store on first use."""

    root: Path | None
    as_json: bool = False
    now: datetime | None = None
    _store: Store | None = None

    def store(self, create: bool = False) -> Store:
        """The store at --root; only *create* (the `create` command) may start a new one, so
        a mistyped root fails instead of becoming an empty store."""
        if self._store is None:
            from fleetbox_db import Store  # on first use: `--version` and `--help` never pay

            progress = Progress("indexing")
            try:
                self._store = Store.open(self.root, create=create, progress=progress)
            except NoStoreError as exc:
                raise CommandError(
                    f"no fleetbox store at {exc.path} (use `create` to start one)"
                ) from exc
            ctx = click.get_current_context()
            ctx.call_on_close(self._store.close)
            ctx.call_on_close(progress.close)
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


def parse_root(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """--root: an empty value is a usage error (as a Path it would be the cwd)."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("must not be empty", ctx, param)
    return Path(value)


def parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        now = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", ctx, param) from None
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


pass_app = click.make_pass_decorator(App)


def setup_logging(ctx: click.Context, verbose: int) -> None:
    """Send the library's log records to stderr for this invocation (warnings always).

    Without -v the handler is added when the first record is made: most commands make none,
    and importing logging costs a tenth of `ls` (fleetbox_db.logs)."""

    def add(logger: logging.Logger) -> None:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_formatter())
        previous = logger.level
        logger.addHandler(handler)
        logger.setLevel((logging.WARNING, logging.INFO)[verbose] if verbose < 2 else logging.DEBUG)

        def restore() -> None:
            logger.removeHandler(handler)
            logger.setLevel(previous)

        ctx.call_on_close(restore)

    if verbose:
        add(logger())
    else:
        ctx.call_on_close(when_made(add))
