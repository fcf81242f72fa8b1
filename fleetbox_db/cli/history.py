"""`fleetbox-db log` and `fleetbox-db sql`: the change history and read-only SQL (issue 17).

One Store call each (Store.history, Store.query or Store.views), formatted by the pure
helpers in cli.history_text. Loaded by the group (cli.commands) when first invoked.
"""

from __future__ import annotations

from typing import Final

import click

from fleetbox_db.cli import history_text
from fleetbox_db.cli.app import App, json_flag
from fleetbox_db.cli.text import to_json
from fleetbox_db.records import EVENT_KINDS as KINDS
from fleetbox_db.rules.ipam import parse_ipv4

__all__ = ["log_command", "sql_command"]

FORMATS: Final = ("table", "json", "jsonl")
pass_app = click.make_pass_decorator(App)


def _format(app: App, chosen: str | None) -> str:
    """--format wins; else the global or per-command --json; else a table."""
    return chosen or ("json" if app.as_json else "table")


@click.command("log")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--since", metavar="AGE|DATE", help="Only events since: 2h, 30m, 1d, or a date.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    metavar="K",
    help=f"Only events of kind K (repeatable): {', '.join(KINDS)}.",
)
@click.option("--ip", metavar="ADDR", help="Only events of members that held ADDR (who had it).")
@click.option(
    "-n", "--limit", type=click.IntRange(min=0), default=1000, show_default=True,
    help="At most the newest N events (0: every event kept).",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format.")
@json_flag
@pass_app
def log_command(
    app: App,
    name: str | None,
    since: str | None,
    kinds: tuple[str, ...],
    ip: str | None,
    limit: int,
    fmt: str | None,
) -> None:
    """Show what changed, oldest first: members created, changed, removed, becoming
    unreadable or readable again, conflicts appearing and clearing, reservations.

    NAME is a member name or CLUSTER/NAME. WHO is `disk` for changes found on disk (the Go
    tool, an editor, a crash) and `fleetbox_db (pid N)` for writes made through this library.
    The index is first brought in line with disk, so a hand edit made just now is shown.
    """
    when = None if since is None else history_text.parse_since(since, app.clock())
    if ip is not None:
        parse_ipv4(ip)  # before the store opens: a bad argument is the first thing said
    events = app.store().history(name, when, kinds or None, limit or None, ip=ip)
    shown = _format(app, fmt)
    if shown == "table":
        click.echo(history_text.events_table(events))
        return
    records = [history_text.event_record(e) for e in events]
    text = to_json(records) if shown == "json" else history_text.rows_jsonl(records)
    if text:
        click.echo(text)


@click.command("sql")
@click.argument("query", required=False, metavar='"SELECT ..."')
@click.option(
    "-p", "--param", "params", multiple=True, metavar="VALUE",
    help="A value for the next ? in the query (repeatable; always text).",
)  # fmt: skip
@click.option("--schema", is_flag=True, help="List the views a query can read, with columns.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row (same as --format csv).")
@click.option("--format", "fmt", type=click.Choice((*FORMATS, "csv")), help="Output format.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
    help="Stop the query after this long (default: 10).",
)  # fmt: skip
@json_flag
@pass_app
def sql_command(
    app: App,
    query: str | None,
    params: tuple[str, ...],
    schema: bool,
    as_csv: bool,
    fmt: str | None,
    timeout: float | None,
) -> None:
    """Run one read-only SELECT over the index's public views, after a reconcile.

    The views are vms, fixtures, addresses, reservations, events and problems (see
    --schema); they are stable across releases, unlike the tables behind them. Writes,
    ATTACH, PRAGMA, load_extension and several statements are refused; a query is stopped
    after --timeout seconds.
    """
    if schema == (query is not None):
        raise click.UsageError("give a query, or --schema (not both)")
    store = app.store()
    if query is None:
        result = store.views()
    elif timeout is None:
        result = store.query(query, params)
    else:
        result = store.query(query, params, timeout=timeout)
    shown = "csv" if as_csv else _format(app, fmt)
    if shown == "csv":
        text = history_text.result_csv(result)
    elif shown == "table":
        text = history_text.result_table(result)
    else:
        records = history_text.result_records(result)
        text = to_json(records) if shown == "json" else history_text.rows_jsonl(records)
    if text:
        click.echo(text)
