"""Key, the name of a member directory: what the scan of clusters/ hands every other part.

Apart from the records so that the scan imports no dataclass: a command's first scan starts
in a child process before the records are loaded (disk/ahead.py).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Key"]


class Key(NamedTuple):
    """A member directory: clusters/<cluster>/<name>. Stray copies share a name, not a key."""

    cluster: str
    name: str
