"""`python -m fleetbox_db`: the same command line as `fleetbox-db`."""

from __future__ import annotations

from fleetbox_db.cli import main

if __name__ == "__main__":
    main()
