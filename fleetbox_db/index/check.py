"""check(): what is wrong on disk now, and where the index has drifted from it.

Reads every config.json afresh and compares with the index; writes nothing, so it is safe
to run beside a crashed or busy writer. The disk half is disk.problems, which the Store
also uses alone when there is no index to compare with.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from fleetbox_db.disk.observe import Observation, observe_all
from fleetbox_db.disk.problems import disk_problems
from fleetbox_db.disk.scan import Scan
from fleetbox_db.index import members
from fleetbox_db.index.answers import member_names
from fleetbox_db.records import Problem

__all__ = ["find_problems"]


def find_problems(
    conn: sqlite3.Connection,
    clusters_dir: str,
    scan: Scan,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """disk.problems' findings (unlistable clusters naming the members the index holds
    there), then the index's drift from disk. *progress(done, total)* after each batch."""
    # The process clock: nothing is recorded, and the filesystem's would touch a file.
    observations = observe_all(clusters_dir, scan, time.time_ns, progress)
    problems = disk_problems(
        clusters_dir,
        observations,
        scan.unreadable_clusters,
        lambda cluster: tuple(member_names(conn, cluster)),
    )
    return problems + _drift(conn, observations, scan)


def _drift(conn: sqlite3.Connection, observations: list[Observation], scan: Scan) -> list[Problem]:
    stored = members.stored_rows(conn)
    problems: list[Problem] = []
    for obs in observations:
        row = stored.pop(obs.key, None)
        name = obs.key.name
        if row is None:
            problems.append(
                Problem("drift", (name,), name, f"index lacks vm {name!r}; run reconcile")
            )
        # Bytes check could not read (digest None) cannot be compared: only the state can.
        elif row.state != obs.state or (obs.digest is not None and row.digest != obs.digest):
            problems.append(
                Problem("drift", (name,), name, f"index is stale for vm {name!r}; run reconcile")
            )
    skipped = set(scan.unreadable_clusters)
    for cluster, name in stored:
        if cluster not in skipped:
            problems.append(
                Problem(
                    "drift",
                    (name,),
                    name,
                    f"index still lists removed vm {name!r}; run reconcile",
                )
            )
    return problems
