"""What is wrong on disk now: stray directories, unreadable configs and clusters, conflicts.

The disk half of check(); index/check.py adds the index's drift. Pure over observations:
the caller reads them (and says which members the index knows in a cluster it cannot list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from fleetbox_db.disk.observe import Observation
from fleetbox_db.records import MemberState, Problem
from fleetbox_db.rules.ipam import conflicts_among
from fleetbox_db.rules.layout import CONFIG_NAME, cluster_name

__all__ = ["disk_problems"]


def disk_problems(
    clusters_dir: Path | str,
    observations: list[Observation],
    unreadable_clusters: Iterable[str],
    known_members: Callable[[str], tuple[str, ...]] = lambda cluster: (),
) -> list[Problem]:
    """Every stray, unreadable config, conflict, then every cluster that cannot be listed
    (naming the members *known_members* says it held)."""
    problems: list[Problem] = []
    for obs in observations:
        cluster, name = obs.key
        where = f"{clusters_dir}/{cluster}/{name}"
        if obs.state == MemberState.STRAY:
            problems.append(
                Problem(
                    "stray",
                    (name,),
                    where,
                    f"stray directory {where}: vm {name!r} belongs under clusters/"
                    f"{cluster_name(name)}/; move it there, or remove it with "
                    f"`fleetbox-db rm {cluster}/{name}`",
                )
            )
        if obs.present and obs.vm is None:
            config = f"{where}/{CONFIG_NAME}"
            problems.append(
                Problem(
                    "unreadable",
                    (name,),
                    config,
                    f"unreadable config {config} of vm {name!r}"
                    f"{f': {obs.reason}' if obs.reason else ''}; fix or remove it",
                    obs.reason,
                )
            )
    claims = ((obs.key.name, obs.vm) for obs in observations if obs.vm is not None)
    for conflict in conflicts_among(claims):
        problems.append(
            Problem(
                "conflict",
                conflict.members,
                conflict.value,
                f"{conflict}; give all but one another address "
                f"(`fleetbox-db set NAME {conflict.kind}=...`)",
            )
        )
    for cluster in unreadable_clusters:
        where = f"{clusters_dir}/{cluster}"
        problems.append(
            Problem(
                "unreadable",
                known_members(cluster),
                where,
                f"cluster directory {where} cannot be listed, so its members were not "
                "checked (the index keeps them meanwhile); fix its permissions",
            )
        )
    return problems
