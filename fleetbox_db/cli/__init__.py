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


def __getattr__(name: str) -> object:
    if name == "cli":
        from fleetbox_db.cli.commands import cli

        return cli
    raise AttributeError(f"module 'fleetbox_db.cli' has no attribute {name!r}")
