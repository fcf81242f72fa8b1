"""The fleetbox-db command line: click commands (commands.py), one Store call each, over
pure text helpers (text.py). Imports only the public API and the pure Go rules (fleetbox_db.rules).
"""

from __future__ import annotations

from fleetbox_db.cli.commands import cli, main

__all__ = ["cli", "main"]
