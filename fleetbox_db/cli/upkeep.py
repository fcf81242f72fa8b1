"""The commands that look after the index and the tree: reconcile and check, with their
bounded output (a summary first, at most --limit items) and a progress bar on a terminal."""

from __future__ import annotations

from typing import Final

import click

from fleetbox_db.cli import reports
from fleetbox_db.cli.app import App, json_flag, pass_app
from fleetbox_db.cli.progress import Progress

__all__ = ["check_command", "reconcile_command"]

DEFAULT_LIMIT: Final = 50

_LIMIT_OPTION: Final = click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=DEFAULT_LIMIT,
    show_default=True,
    metavar="N",
    help="Print at most N items of each kind (0: all). --json always has all.",
)


@click.command("reconcile")
@click.option("--full", is_flag=True, help="Re-read every config.json, changed or not.")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@_LIMIT_OPTION
@json_flag
@pass_app
@click.pass_context
def reconcile_command(ctx: click.Context, app: App, full: bool, dry_run: bool, limit: int) -> None:
    """Bring the index in line with disk.

    Prints counts, then what changed (or, with --dry-run, would change) and what needs a
    person: unreadable configs, conflicts, strays. Exit status 1 while any of those remain.
    """
    progress = Progress("reconciling")
    try:
        report = app.store().reconcile(full=full, dry_run=dry_run, progress=progress)
    finally:
        progress.close()
    app.emit(
        reports.report_record(report, dry_run),
        lambda: reports.report_text(report, dry_run, limit or None),
    )
    if report.needs_a_person:
        ctx.exit(1)


@click.command("check")
@_LIMIT_OPTION
@json_flag
@pass_app
@click.pass_context
def check_command(ctx: click.Context, app: App, limit: int) -> None:
    """Report conflicts, unreadable configs, strays and drift.

    Looks at disk as it is now and at the index's drift from it; changes nothing. Prints a
    summary, then at most --limit problems. Exit status 1 for problems a person must fix;
    drift alone (the next listing fixes it) exits 0.
    """
    problems = app.store().check()
    app.emit(
        [reports.problem_record(p) for p in problems],
        lambda: reports.check_text(problems, limit or None),
    )
    if any(p.needs_a_person for p in problems):
        ctx.exit(1)
