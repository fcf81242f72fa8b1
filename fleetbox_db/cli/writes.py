"""The commands that change members: create, set and rm (one Store call each; `set` reads
the member, then saves it through Store.save, which checks uniqueness as create does)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar

import click

from fleetbox_db import VM, generate_mac
from fleetbox_db.cli import text
from fleetbox_db.cli.app import PROG, App, CommandError, json_flag, pass_app
from fleetbox_db.rules.layout import cluster_name, is_stray, member_key, validate_name

__all__ = ["create_command", "rm_command", "set_command"]

_DEFAULTS: Final = {
    f.name: f.default for f in dataclasses.fields(VM) if f.default is not dataclasses.MISSING
}
F = TypeVar("F", bound=Callable[..., Any])


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


_FIXTURE_OPTION: Final = click.option(
    "--fixture",
    "fixtures",
    multiple=True,
    metavar="HOST:GUEST",
    help="Export host directory HOST read-only at GUEST (repeatable).",
)


@click.command("create")
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
@_FIXTURE_OPTION
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

    Writes its config.json, refusing an IP or MAC another member holds. The one command
    that starts a new store at a root that has none.
    """
    if ip and subnet is not None:
        raise click.UsageError("--ip and --subnet cannot be used together")
    validate_name(name)
    vm = VM(name, mac=mac, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, image=image, ip=ip)
    vm.fixtures = text.parse_fixtures(fixtures, os.getcwd(), os.path.isdir)
    if app.now is not None:
        vm.created_at = app.now
    entry = text.created_entry(app.store(create=True).create(vm, subnet=subnet))
    app.emit(text.entry_record(entry), lambda: text.show_text(entry))


@click.command("set")
@click.argument("name")
@click.argument("changes", nargs=-1, metavar="KEY=VALUE...")
@_FIXTURE_OPTION
@json_flag
@pass_app
def set_command(app: App, name: str, changes: tuple[str, ...], fixtures: tuple[str, ...]) -> None:
    """Change a member's config and print it.

    KEY is ip, mac, cpus, memory_mb, disk_mb or image (mac= derives the Go tool's MAC
    from the name); --fixture replaces the fixtures.
    Refuses an IP or MAC another member holds, as create does; nothing is written then.
    """
    key = member_key(name)
    if is_stray(*key):
        raise CommandError(
            f"set does not write a stray directory ({name}): the Go tool never reads it; "
            f"move it under clusters/{cluster_name(key.name)}/, or remove it with "
            f"`{PROG} rm {name}`"
        )
    name = key.name  # web/web-1 is web-1
    try:
        fields = text.parse_assignments(changes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not fields and not fixtures:
        raise click.UsageError("give at least one KEY=VALUE or --fixture")
    store = app.store()
    vm = store.load(name)
    # The member is its directory: a copied directory's config still names the original,
    # and saving under that name would rewrite the original's config instead.
    vm.name = name
    for field, value in fields.items():
        setattr(vm, field, value)
    if "mac" in fields and not vm.mac:  # `mac=`: the Go tool's own, as create gives
        vm.mac = generate_mac(vm.name)
    if fixtures:
        vm.fixtures = text.parse_fixtures(fixtures, os.getcwd(), os.path.isdir)
    entry = text.created_entry(store.save(vm))
    app.emit(text.entry_record(entry), lambda: text.show_text(entry))


@click.command("rm")
@click.argument("targets", nargs=-1, metavar="NAME|CLUSTER...")
@click.option("--all", "remove_all", is_flag=True, help="Remove every member.")
@click.option("-y", "--yes", is_flag=True, help="Remove several members without asking.")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@json_flag
@pass_app
@click.pass_context
def rm_command(
    ctx: click.Context,
    app: App,
    targets: tuple[str, ...],
    remove_all: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Remove members by name or by cluster.

    An exact member name wins, else every member directory of that cluster (`rm web`
    removes web-1 and web-2, not web-prod); cluster/name removes a stray. A running member
    (its lock held) is refused. Removing several members asks first on a terminal and
    needs --yes otherwise. Unknown names and refusals are reported after the rest, exit 1.
    """
    if remove_all == bool(targets):
        raise click.UsageError("give member or cluster names, or --all (not both)")
    for target in targets:
        member_key(target)  # before opening: a bad name must not even look for a store

    def confirm(labels: list[str]) -> bool:
        if len(labels) < 2 or yes:
            return True
        preview = ", ".join(map(text.display, labels))
        if not sys.stdin.isatty():
            raise CommandError(
                f"rm would remove {len(labels)} members ({preview}); pass --yes to remove "
                "them, or --dry-run to only list them"
            )
        click.echo(f"{PROG}: would remove {len(labels)} members: {preview}", err=True)
        # Not click.confirm: it turns Ctrl-C into "Aborted!" and exit 1; read here, Ctrl-C
        # exits 130 like everywhere else, and end of input means no.
        try:
            click.echo(f"Remove these {len(labels)} members? [y/N]: ", nl=False, err=True)
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            click.echo(err=True)  # the "interrupted" line starts a line of its own
            raise
        return answer.strip().lower() in ("y", "yes")

    result = app.store().remove(None if remove_all else targets, dry_run=dry_run, confirm=confirm)
    if not result.confirmed:
        raise CommandError("nothing removed")
    prefix = "would remove " if dry_run else ""
    app.emit(
        {
            "removed": result.removed,
            "unknown": result.unknown,
            "failed": [str(exc) for exc in result.failed],
            "dry_run": dry_run,
        },
        "\n".join(prefix + text.display(label) for label in result.removed),
    )
    failed = [f"no member or cluster named {t!r}" for t in result.unknown]
    failed += [str(exc) for exc in result.failed]
    for message in failed:
        CommandError(message).show()
    if failed:
        ctx.exit(1)
