"""The fleetbox-db command line: click commands (commands.py), one Store call each, over
pure text helpers (text.py). Imports only the public API and the pure Go rules (fleetbox_db.rules).

Nothing is imported until it is used: `fleetbox-db --version` is answered before the
commands are even defined (defining them imports click, the records and the Go rules: three
quarters of that command's time), and ``cli`` is loaded on first access.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The console script `fleetbox-db` (also `python -m fleetbox_db`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:  # exactly what the eager --version option prints
        from fleetbox_db import __version__

        sys.stdout.write(f"fleetbox-db {__version__}\n")
        return
    _scan_ahead(args)
    import gc

    from fleetbox_db.cli.commands import main as run

    # One command, then the process ends. The cyclic collector would only look for cycles
    # our code does not make (tests check that answers leave none) while visiting every
    # record an answer builds: 22 ms of `ls --json` at 10,000 members. At exit it would
    # traverse every object the imports made (7 ms of `ls`); frozen, they are the OS's.
    gc.disable()
    try:
        run(argv)  # ends in SystemExit, as click's standalone mode does
    finally:
        gc.freeze()


#: Commands whose first act on disk is the scan, with nothing written before it.
_SCAN_FIRST = frozenset({"ls", "show", "who-has", "free-ips", "check"})


def _scan_ahead(args: list[str]) -> None:
    """Start the command's scan in a child process while click and the library load
    (disk.ahead). scan() takes the child's listing only for the very path the Store scans,
    so a wrong guess here costs a child's work, never an answer."""
    wanted, root = scan_first(args)
    if not wanted:
        return
    from fleetbox_db import FleetboxError, scan_ahead

    try:
        scan_ahead(root)
    except (FleetboxError, OSError):  # no home to find the root in: click will say so
        return


def scan_first(args: Sequence[str]) -> tuple[bool, str | None]:
    """Whether *args* read ``[global options] COMMAND ...`` for a command in _SCAN_FIRST,
    and the --root they give (None: the default root). A guess, not a parse: click parses."""
    root: str | None = None
    rest = iter(args)
    for arg in rest:
        if arg == "--root":
            root = next(rest, "")
        elif arg.startswith("--root="):
            root = arg.removeprefix("--root=")
        elif arg == "--now":
            next(rest, None)
        elif not (arg in ("--json", "--verbose") or arg.startswith(("-v", "--now="))):
            return arg in _SCAN_FIRST and root != "", root
    return False, root


def __getattr__(name: str) -> object:
    if name == "cli":
        from fleetbox_db.cli.commands import cli

        return cli
    raise AttributeError(f"module 'fleetbox_db.cli' has no attribute {name!r}")
