"""Which members a removal by name or cluster means: the Go CLI's resolveTargets. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetbox_db.records import Key
from fleetbox_db.rules.layout import cluster_name, is_stray

__all__ = ["resolve_members", "resolve_targets"]


def resolve_targets(names: Sequence[str], patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(targets, unknown patterns), as the Go CLI's resolveTargets picks them.

    An exact member name wins; otherwise every member whose cluster_name is the pattern, in
    *names* order. Both lists are de-duplicated keeping first-seen order.
    """
    present = set(names)
    targets: dict[str, None] = {}
    unknown: dict[str, None] = {}
    for pattern in patterns:
        if pattern in present:
            matched = [pattern]
        else:
            matched = [n for n in names if cluster_name(n) == pattern]
        if not matched:
            unknown[pattern] = None
        targets.update(dict.fromkeys(matched))
    return list(targets), list(unknown)


def resolve_members(keys: Sequence[Key], patterns: Iterable[str]) -> tuple[list[Key], list[str]]:
    """(member directories, unknown patterns) that `rm` means, in *keys* (scan) order.

    ``cluster/name`` is that directory exactly (a stray included). Otherwise an exact member
    name wins, as in resolve_targets, but only where Go finds it (a stray copy needs the
    explicit form); else every directory under clusters/<pattern>/, strays there included,
    so removing a cluster leaves none of its directories behind.
    """
    targets: dict[Key, None] = {}
    unknown: dict[str, None] = {}
    for pattern in patterns:
        if pattern.count("/") == 1:
            cluster, name = pattern.split("/")
            matched = [k for k in keys if k == (cluster, name)]
        else:
            matched = [k for k in keys if k.name == pattern and not is_stray(*k)]
            if not matched:
                matched = [k for k in keys if k.cluster == pattern]
        if not matched:
            unknown[pattern] = None
        targets.update(dict.fromkeys(matched))
    return list(targets), list(unknown)
