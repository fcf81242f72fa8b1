"""fleetbox-db: the operators' command line over Store (SPEC §8).

A thin click shell: each command makes one Store call and formats the result with the pure
helpers in cli.text. Every FleetboxError (and an OSError, such as an unwritable root)
becomes one line ``fleetbox-db: error: <message>`` on stderr and exit status 1; click's usage
errors keep status 2; Ctrl-C exits 130. Only `create` may start a store: every other
command refuses a root without one. The commands that read live here; writes.py has
create, set and rm, upkeep.py reconcile and check. Nothing here imports SQLAlchemy or
Alembic: the library loads them only when the index has to be created or upgraded, so `ls`
costs less than `import sqlalchemy`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fleetbox_db import FleetboxError, InvalidNameError
from fleetbox_db.cli import text
from fleetbox_db.cli.app import (
    PROG,
    App,
    CommandError,
    ErrorLines,
    json_flag,
    parse_now,
    parse_root,
    pass_app,
    print_version,
    setup_logging,
    warn,
)
from fleetbox_db.logs import log
from fleetbox_db.records import MemberState
from fleetbox_db.rules.ipam import ip_or_mac, required_subnet
from fleetbox_db.rules.layout import member_key

if TYPE_CHECKING:
    from fleetbox_db import Entry, Store

_STATES = [str(s) for s in MemberState]


@click.group(cls=ErrorLines, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    callback=parse_root,
    metavar="PATH",
    help="Storage root. Default: $FLEETBOX_HOME, else ~/.fleetbox (the sudo user's home "
    "under sudo), as the Go tool resolves it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option(
    "-v", "--verbose", count=True, help="Log what each command does to stderr (-vv: more)."
)
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
    if verbose:  # logged only then: the record would import logging (fleetbox_db.logs)
        started = time.monotonic()
        name = ctx.invoked_subcommand
        ctx.call_on_close(lambda: log.info("%s took %.3f s", name, time.monotonic() - started))


@cli.command("ls")
@click.option(
    "--cluster", "clusters", multiple=True, metavar="C", help="Only cluster C (repeatable)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_STATES),
    help="Only members in this state (repeatable).",
)
@click.option("-q", "--quiet", is_flag=True, help="Names only, one per line.")
@click.option("--no-headers", is_flag=True, help="The table without its header line.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl"]),
    help="table (default), json (one list), or jsonl (one object per line, streamed).",
)
@json_flag
@pass_app
def ls_command(
    app: App,
    clusters: tuple[str, ...],
    states: tuple[str, ...],
    quiet: bool,
    no_headers: bool,
    fmt: str | None,
) -> None:
    """List members with their config and state.

    One row per member directory, in the Go tool's List() order; STATE is ok,
    configless, unreadable, stray or conflict. A stray is named cluster/name in -q output.
    """
    fmt = fmt or ("json" if app.as_json else "table")
    entries = text.keep(_listed(app.store(), clusters), clusters, states)
    lines: Iterator[str]
    if quiet:
        lines = map(text.label, entries)
    elif fmt == "jsonl":
        lines = map(text.to_json_line, map(text.entry_record, entries))
    elif fmt == "json":  # the text to_json would give, written without the slow encoder
        from fleetbox_db.cli.lsjson import entries_json

        lines = iter([entries_json(entries)])
    else:
        lines = iter(text.ls_table(entries, app.clock(), headers=not no_headers).splitlines())
    for chunk in text.chunks(lines):
        click.echo("\n".join(chunk))


def _listed(store: Store, clusters: Sequence[str]) -> list[Entry]:
    """Every entry, or one cluster's alone when only one is asked for (its rows alone)."""
    if len(set(clusters)) != 1:
        return store.entries()
    try:
        return store.entries(clusters[0])
    except InvalidNameError:  # no directory can have that name
        return []


@cli.command("show")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@json_flag
@pass_app
@click.pass_context
def show_command(ctx: click.Context, app: App, names: tuple[str, ...]) -> None:
    """Show members in full, fixtures included.

    NAME may be cluster/name, which reaches a stray. With several names, blocks are
    separated by a blank line (--json: a list); a missing one is an error line, exit 1.
    """
    for name in names:
        member_key(name)  # before opening: a bad name must not even look for a store
    store = app.store()
    found, failed = [], []
    for name in names:
        try:
            found.append(store.entry(name))
        except FleetboxError as exc:
            failed.append(str(exc))
    if app.as_json:
        records = [text.entry_record(e) for e in found]
        if len(names) > 1:
            click.echo(text.to_json(records))
        elif records:  # one NAME: one object, as before; none when it is missing
            click.echo(text.to_json(records[0]))
    elif found:
        click.echo("\n\n".join(text.show_text(e) for e in found))
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
    required_subnet(cidr)  # a bad CIDR is the error to report, store or no store
    store = app.store()
    ips = store.iter_free_ips(cidr) if limit is None else iter(store.free_ips(cidr, limit=limit))
    # Streamed: a /8 without --limit prints as it goes instead of building a list first.
    for chunk in text.chunks(text.json_array_lines(ips) if app.as_json else ips):
        click.echo("\n".join(chunk))


@cli.command("who-has")
@click.argument("value", metavar="IP|MAC")
@json_flag
@pass_app
@click.pass_context
def who_has_command(ctx: click.Context, app: App, value: str) -> None:
    """Print every member holding an IP or MAC, one per line.

    Exit status 1 when nobody does, and when several do (a conflict, also warned about).
    """
    ip_or_mac(value)  # a bad value is the error to report, store or no store
    holders = app.store().holders(value)
    app.emit({"value": value, "holders": holders}, "\n".join(map(text.display, holders)))
    if not holders:
        if not app.as_json:
            CommandError(f"no member holds {value}").show()
        ctx.exit(1)
    if len(holders) > 1:
        warn(
            f"{value} is claimed by {len(holders)} members; give all but one another address "
            f"with `{PROG} set NAME {'mac' if ':' in value else 'ip'}=...`"
        )
        ctx.exit(1)


@cli.command("migrate")
@json_flag
@pass_app
def migrate_command(app: App) -> None:
    """Upgrade the index schema and print the revision."""
    revision = app.store().migrate()
    app.emit({"revision": revision}, revision)


cli.lazy = {
    "create": "fleetbox_db.cli.writes:create_command",
    "set": "fleetbox_db.cli.writes:set_command",
    "rm": "fleetbox_db.cli.writes:rm_command",
    "reconcile": "fleetbox_db.cli.upkeep:reconcile_command",
    "check": "fleetbox_db.cli.upkeep:check_command",
    "log": "fleetbox_db.cli.history:log_command",
    "sql": "fleetbox_db.cli.history:sql_command",
}


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `fleetbox-db` (also `python -m fleetbox_db`)."""
    cli.main(args=argv, prog_name=PROG)
