"""Which members a removal by name or cluster means: the Go CLI's resolveTargets. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetbox_db.rules.layout import cluster_name

__all__ = ["resolve_targets"]


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
