"""fleetbox-db: the operators' command line over Store (SPEC §8).

A thin click shell: each command makes one Store call and formats the result with the pure
helpers in cli.text. Every FleetboxError (and an OSError, such as an unwritable root)
becomes one line ``fleetbox-db: error: <message>`` on stderr and exit status 1; click's usage
errors keep status 2. Nothing here imports SQLAlchemy or Alembic: the library loads them
only when the index has to be created or upgraded, so `ls` costs less than `import
sqlalchemy`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from fleetbox_db import VM
from fleetbox_db.cli import text
from fleetbox_db.cli.app import (
    PROG,
    App,
    CommandError,
    ErrorLines,
    json_flag,
    parse_now,
    print_version,
    setup_logging,
)
from fleetbox_db.rules.layout import validate_name

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

PROGRESS_THRESHOLD: Final = 1000
"""Reconcile shows a progress bar on a terminal only for stores larger than this."""

_DEFAULTS: Final = {
    f.name: f.default for f in dataclasses.fields(VM) if f.default is not dataclasses.MISSING
}
F = TypeVar("F", bound=Callable[..., Any])


@click.group(cls=ErrorLines, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="PATH",
    help="Storage root. Default: $FLEETBOX_HOME, else ~/.fleetbox (the sudo user's home "
    "under sudo), as the Go tool resolves it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("-v", "--verbose", count=True, help="Log library activity to stderr (-vv: debug).")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=print_version,
    help="Show the version and exit.",
)
@click.option("--now", hidden=True, callback=parse_now, help="Pretend it is this time (tests).")
@click.pass_context
def cli(
    ctx: click.Context, root: Path | None, as_json: bool, verbose: int, now: datetime | None
) -> None:
    """Inspect and repair the fleetbox VM store that the Go tool writes."""
    ctx.obj = App(root=root, as_json=as_json, now=now)
    setup_logging(ctx, verbose)


pass_app = click.make_pass_decorator(App)


@cli.command("ls")
@click.option("--cluster", metavar="C", help="Only the members of cluster C.")
@json_flag
@pass_app
def ls_command(app: App, cluster: str | None) -> None:
    """List members with their config and state.

    One row per member directory, in the Go tool's List() order; STATE is ok,
    configless, unreadable, stray or conflict.
    """
    entries = app.store().entries(cluster)
    if app.as_json:  # the same text emit() would print, written without the slow encoder
        from fleetbox_db.cli.lsjson import entries_json

        click.echo(entries_json(entries))
        return
    app.emit(
        [text.entry_record(e) for e in entries],
        lambda: text.ls_table(entries, app.clock()),
    )


@cli.command("show")
@click.argument("name")
@json_flag
@pass_app
def show_command(app: App, name: str) -> None:
    """Show one member in full, fixtures included."""
    validate_name(name)  # before opening: a bad name must not create a store
    entry = app.store().entry(name)
    app.emit(text.entry_record(entry), lambda: text.show_text(entry))


def _size_option(name: str, help: str) -> Callable[[F], F]:
    field = name.removeprefix("--").replace("-", "_")
    return click.option(
        name,
        type=click.IntRange(min=1),
        default=_DEFAULTS[field],
        show_default=True,
        metavar="N",
        help=help,
    )


@cli.command("create")
@click.argument("name")
@_size_option("--cpus", "Virtual CPUs.")
@_size_option("--memory-mb", "Memory in MiB.")
@_size_option("--disk-mb", "Disk size in MiB.")
@click.option(
    "--image", default=_DEFAULTS["image"], show_default=True, metavar="IMAGE", help="Base image."
)
@click.option("--ip", default="", metavar="IP", help="A fixed IPv4 address (not with --subnet).")
@click.option("--subnet", metavar="CIDR", help="Allocate the lowest free address of CIDR.")
@click.option(
    "--mac", default="", metavar="MAC", help="MAC address. Default: derived from the name."
)
@click.option(
    "--fixture",
    "fixtures",
    multiple=True,
    metavar="HOST:GUEST",
    help="Export host directory HOST read-only at GUEST (repeatable).",
)
@json_flag
@pass_app
def create_command(
    app: App,
    name: str,
    cpus: int,
    memory_mb: int,
    disk_mb: int,
    image: str,
    ip: str,
    subnet: str | None,
    mac: str,
    fixtures: tuple[str, ...],
) -> None:
    """Create a member and print it.

    Writes its config.json, refusing an IP or MAC another member holds.
    """
    if ip and subnet is not None:
        raise click.UsageError("--ip and --subnet cannot be used together")
    validate_name(name)
    vm = VM(name, mac=mac, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, image=image, ip=ip)
    vm.fixtures = text.parse_fixtures(fixtures, os.getcwd(), os.path.isdir)
    if app.now is not None:
        vm.created_at = app.now
    entry = text.created_entry(app.store().create(vm, subnet=subnet))
    app.emit(text.entry_record(entry), lambda: text.show_text(entry))


@cli.command("rm")
@click.argument("targets", nargs=-1, metavar="NAME|CLUSTER...")
@click.option("--all", "remove_all", is_flag=True, help="Remove every member.")
@json_flag
@pass_app
@click.pass_context
def rm_command(ctx: click.Context, app: App, targets: tuple[str, ...], remove_all: bool) -> None:
    """Remove members by name or by cluster.

    An exact member name wins, else every member of that cluster (`rm web` removes web-1
    and web-2, not web-prod). Unknown names are reported after the others are removed,
    with exit status 1.
    """
    if remove_all == bool(targets):
        raise click.UsageError("give member or cluster names, or --all (not both)")
    for target in targets:
        validate_name(target)  # before opening: a bad name must not create a store
    result = app.store().remove(None if remove_all else targets)
    app.emit(
        {"removed": result.removed, "unknown": result.unknown},
        "\n".join(map(text.display, result.removed)),
    )
    failed = [f"no member or cluster named {t!r}" for t in result.unknown]
    failed += [str(exc) for exc in result.failed]
    for message in failed:
        CommandError(message).show()
    if failed:
        ctx.exit(1)


@cli.command("free-ips")
@click.argument("cidr")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N addresses.")
@json_flag
@pass_app
def free_ips_command(app: App, cidr: str, limit: int | None) -> None:
    """Print free addresses of an IPv4 CIDR.

    Host addresses nobody holds or reserves, lowest first, one per line.
    """
    store = app.store()
    ips = store.iter_free_ips(cidr) if limit is None else iter(store.free_ips(cidr, limit=limit))
    # Streamed: a /8 without --limit prints as it goes instead of building a list first.
    for chunk in text.chunks(text.json_array_lines(ips) if app.as_json else ips):
        click.echo("\n".join(chunk))


@cli.command("who-has")
@click.argument("value", metavar="IP|MAC")
@json_flag
@pass_app
def who_has_command(app: App, value: str) -> None:
    """Print the member holding an IP or MAC.

    Exit status 1 when nobody does.
    """
    name = app.store().who_has(value)
    if name is None:
        raise CommandError(f"no member holds {value}")
    app.emit({"value": value, "name": name}, text.display(name))


class _Progress:
    """A bar on stderr, drawn only on a terminal and once a reconcile has more than
    PROGRESS_THRESHOLD configs to read; Store.reconcile() calls it after each batch."""

    def __init__(self) -> None:
        self.bar: ProgressBar[int] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if total <= PROGRESS_THRESHOLD or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(
                length=total, label=f"reconciling {total} configs", file=sys.stderr
            )
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@cli.command("reconcile")
@click.option("--full", is_flag=True, help="Re-read every config.json, changed or not.")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@json_flag
@pass_app
def reconcile_command(app: App, full: bool, dry_run: bool) -> None:
    """Bring the index in line with disk.

    Prints what changed (or, with --dry-run, would change), then the unreadable configs
    and conflicts that need a human.
    """
    progress = _Progress()
    try:
        report = app.store().reconcile(full=full, dry_run=dry_run, progress=progress)
    finally:
        progress.close()
    app.emit(
        text.report_record(report, dry_run),
        lambda: text.report_text(report, dry_run),
    )


@cli.command("check")
@json_flag
@pass_app
@click.pass_context
def check_command(ctx: click.Context, app: App) -> None:
    """Report conflicts, unreadable configs and drift.

    Looks at disk as it is now (stray directories too) and at the index's drift from it;
    changes nothing. Exit status 1 when there is any problem, one line each.
    """
    problems = app.store().check()
    app.emit(
        [text.problem_record(p) for p in problems],
        "\n".join(text.display(p.message) for p in problems) or "no problems",
    )
    if problems:
        ctx.exit(1)


@cli.command("migrate")
@json_flag
@pass_app
def migrate_command(app: App) -> None:
    """Upgrade the index schema and print the revision."""
    revision = app.store().migrate()
    app.emit({"revision": revision}, revision)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `fleetbox-db` (also `python -m fleetbox_db`)."""
    cli.main(args=argv, prog_name=PROG)
