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
    from fleetbox_db.cli.commands import main as run

    try:
        run(argv)  # ends in SystemExit, as click's standalone mode does
    finally:
        # The process ends here. At exit the interpreter's collector traverses every object
        # the imports made (click's and ours) a few times over: 7 ms of an 80 ms `ls`.
        # Frozen objects are skipped; the Store is closed and stdout flushed as before.
        import gc

        gc.freeze()


def __getattr__(name: str) -> object:
    if name == "cli":
        from fleetbox_db.cli.commands import cli

        return cli
    raise AttributeError(f"module 'fleetbox_db.cli' has no attribute {name!r}")
