"""check(): what is wrong on disk now, and where the index has drifted from it.

Reads every config.json afresh and compares with the index; writes nothing, so it is safe
to run beside a crashed or busy writer.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from fleetbox_db import queries
from fleetbox_db.config import VM
from fleetbox_db.disk import Scan
from fleetbox_db.dryrun import conflicts_among
from fleetbox_db.paths import cluster_name
from fleetbox_db.reconcile import Observation, Reconciler

ProblemKind = Literal["conflict", "unreadable", "stray", "drift", "index"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing an operator should look at, naming the members and the value involved."""

    kind: ProblemKind
    members: tuple[str, ...]
    value: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Entry:
    """One member directory as `ls` shows it: state, and the last config that parsed."""

    name: str
    cluster: str
    state: str  # ok, configless, unreadable, stray, conflict
    vm: VM | None


def entries_from_index(conn: sqlite3.Connection) -> list[Entry]:
    with queries.snapshot(conn):
        clashing = {name for c in queries.conflicts(conn) for name in c.members}
        members = queries.all_members(conn)
    return [
        Entry(name, cluster, "conflict" if state == "ok" and name in clashing else state, vm)
        for cluster, name, state, vm in members
    ]


def find_problems(
    conn: sqlite3.Connection | None,
    reconciler: Reconciler,
    scan: Scan,
    index_error: str | None = None,
) -> list[Problem]:
    observations = [reconciler.observe(m) for m in scan.members]
    problems = _disk_problems(reconciler.clusters_dir, observations)
    for cluster in scan.unreadable_clusters:
        where = f"{reconciler.clusters_dir}/{cluster}"
        known = tuple(queries.member_names(conn, cluster)) if conn is not None else ()
        problems.append(
            Problem(
                "unreadable",
                known,
                where,
                f"cluster directory {where} cannot be listed, so its members were not "
                "checked (the index keeps them meanwhile); fix its permissions",
            )
        )
    if index_error is not None:
        problems.append(Problem("index", (), "", f"index not used: {index_error}"))
    elif conn is not None:
        problems.extend(_drift(conn, observations, scan))
    return problems


def _disk_problems(clusters_dir: str, observations: list[Observation]) -> list[Problem]:
    problems: list[Problem] = []
    for obs in observations:
        cluster, name = obs.key
        where = f"{clusters_dir}/{cluster}/{name}"
        if obs.state == "stray":
            problems.append(
                Problem(
                    "stray",
                    (name,),
                    where,
                    f"stray directory {where}: vm {name!r} belongs under clusters/"
                    f"{cluster_name(name)}/; move or remove it",
                )
            )
        if obs.present and obs.vm is None:
            problems.append(
                Problem(
                    "unreadable",
                    (name,),
                    f"{where}/config.json",
                    f"unreadable config {where}/config.json of vm {name!r}; fix or remove it",
                )
            )
    claims = ((obs.key[1], obs.vm) for obs in observations if obs.vm is not None)
    for conflict in conflicts_among(claims):
        problems.append(
            Problem(
                "conflict",
                conflict.members,
                conflict.value,
                f"{conflict}; give all but one another address",
            )
        )
    return problems


def _drift(conn: sqlite3.Connection, observations: list[Observation], scan: Scan) -> list[Problem]:
    stored = {key: row for key, (row, _) in queries.stored_rows(conn).items()}
    problems: list[Problem] = []
    for obs in observations:
        row = stored.pop(obs.key, None)
        name = obs.key[1]
        if row is None:
            problems.append(
                Problem("drift", (name,), name, f"index lacks vm {name!r}; run reconcile")
            )
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
