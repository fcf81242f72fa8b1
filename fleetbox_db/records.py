"""The public records: what the Store takes and returns, shared by every part.

VM and Fixture are one member's config.json (fleetbox_db.rules.config reads and writes their
bytes); Entry, Problem, Conflict, ReconcileReport and Removal are the answers of entries(),
check(), reconcile() and remove(); Key and MemberState name a member directory and its state
wherever one is passed between modules. Pure: no I/O, and nothing of ours but the errors.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, Literal, TypeVar, get_args

from fleetbox_db.errors import FleetboxError
from fleetbox_db.keys import Key

__all__ = [
    "EVENT_KINDS",
    "FIXTURE_FIELDS",
    "STORED_STATES",
    "VM",
    "VM_FIELDS",
    "ZERO_TIME",
    "Conflict",
    "Entry",
    "Event",
    "EventKind",
    "Fixture",
    "Key",
    "MemberState",
    "Problem",
    "ProblemKind",
    "QueryResult",
    "ReconcileReport",
    "Removal",
    "built_vm",
    "same_vm",
]

ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)
"""Go's zero ``time.Time``: what a missing or null ``created_at`` reads as."""

VM_FIELDS: Final = (
    "name", "mac", "cpus", "memory_mb", "disk_mb", "image", "created_at", "fixtures", "ip",
)  # fmt: skip
"""A VM's fields in Go's struct order: the known config.json keys, in the order written."""

FIXTURE_FIELDS: Final = ("host_path", "guest_path", "label")
"""A Fixture's fields in Go's struct order."""


def _now() -> datetime:
    return datetime.now().astimezone()


@dataclass
class Fixture:
    """One host directory exported read-only to the guest; ``extra`` keeps unknown keys in order."""

    host_path: str
    guest_path: str
    label: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fixture) or other.__class__ is not self.__class__:
            return NotImplemented
        return _fixture_key(self) == _fixture_key(other) and _equal(self.extra, other.extra)

    def __deepcopy__(self, memo: dict[int, Any]) -> Fixture:
        return _copy_record(self, memo)


@dataclass
class VM:
    """One member's config.json. ``extra`` keeps unknown top-level keys in file order.

    A ``created_at`` read from disk remembers its exact text (nanoseconds, offset spelling), so
    an unchanged value is written back byte-identical; assign a new datetime to reformat it.
    Likewise a string in which Go 1.26 wrote an invalid byte as ``\\ufffd`` is read as a
    rules.spelling.Spelled str, equal to the plain one, and written back with the escape; a
    new value is written as Go 1.27 writes it, U+FFFD raw. Neither memory affects ``==``.
    """

    name: str
    mac: str = ""
    cpus: int = 2
    memory_mb: int = 4096
    disk_mb: int = 20480
    image: str = "debian-12"
    created_at: datetime = field(default_factory=_now)
    fixtures: list[Fixture] = field(default_factory=list)
    ip: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    _created_at_raw: tuple[str, datetime] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VM) or other.__class__ is not self.__class__:
            return NotImplemented
        return same_vm(self, other)

    def __deepcopy__(self, memo: dict[int, Any]) -> VM:
        return _copy_record(self, memo)


# VM and Fixture write their own == and deepcopy (the dataclass ones would compare and copy
# the same fields) because Python's recurse through ``extra``, which reads as deep as Go does.
_fixture_key: Final = attrgetter(*FIXTURE_FIELDS)
_vm_key: Final = attrgetter(*VM_FIELDS)


def same_vm(a: VM, b: VM) -> bool:
    """VM ==, whatever the classes: for a subclass that reads as a VM (index.lazyvm)."""
    return _vm_key(a) == _vm_key(b) and _equal(a.extra, b.extra)


def built_vm(
    name: str,
    mac: str,
    cpus: int,
    memory_mb: int,
    disk_mb: int,
    image: str,
    created_at: datetime,
    fixtures: list[Fixture],
    ip: str,
    extra: dict[str, Any],
) -> VM:
    """What VM(...) makes, field for field and in its order, without the dataclass
    __init__: for values a decoder or the index already checked, built for every member of
    every listing. Attributes set one by one, as __init__ does, keep the class's shared-key
    instance dict: a dict assigned whole was 0.45 against 0.22 us and 464 against 160 bytes
    (timeit, sys.getsizeof). The assert below ties the order to VM_FIELDS."""
    vm = object.__new__(VM)
    vm.name = name
    vm.mac = mac
    vm.cpus = cpus
    vm.memory_mb = memory_mb
    vm.disk_mb = disk_mb
    vm.image = image
    vm.created_at = created_at
    vm.fixtures = fixtures
    vm.ip = ip
    vm.extra = extra
    return vm


assert tuple(vars(built_vm("", "", 0, 0, 0, "", ZERO_TIME, [], "", {}))) == (*VM_FIELDS, "extra")


def built_fixture(host_path: str, guest_path: str, label: str, extra: dict[str, Any]) -> Fixture:
    """What Fixture(...) makes, without its __init__: see built_vm."""
    fixture = object.__new__(Fixture)
    fixture.host_path = host_path
    fixture.guest_path = guest_path
    fixture.label = label
    fixture.extra = extra
    return fixture


assert tuple(vars(built_fixture("", "", "", {}))) == (*FIXTURE_FIELDS, "extra")


class MemberState(StrEnum):
    """What a member directory holds; a str, so it compares equal to its value."""

    OK = "ok"
    """config.json parses."""
    CONFIGLESS = "configless"
    """No config.json (a directory the Go tool made before writing one, or emptied)."""
    UNREADABLE = "unreadable"
    """config.json exists but cannot be read or parsed; the last good config is kept."""
    STRAY = "stray"
    """The directory sits under a cluster that is not cluster_name(name): Go lists it but
    never finds it by name."""
    CONFLICT = "conflict"
    """Shown by entries() only: ok, but another member's config claims its IP or MAC."""


STORED_STATES: Final = (
    MemberState.OK,
    MemberState.CONFIGLESS,
    MemberState.UNREADABLE,
    MemberState.STRAY,
)
"""The states the index records (a conflict is worked out when asked, never stored)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One member directory as `ls` shows it: state, and the last config that parsed.

    ``reason`` says why an unreadable config cannot be used (the decode error, or the OS
    error such as permission denied); None for every other state.
    """

    name: str
    cluster: str
    state: str  # a MemberState value
    vm: VM | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two or more member directories whose configs claim one IP or MAC."""

    kind: Literal["ip", "mac"]
    value: str
    members: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} {self.value} is claimed by {', '.join(self.members)}"


ProblemKind = Literal["conflict", "unreadable", "stray", "drift", "index"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing an operator should look at, naming the members and the value involved."""

    kind: ProblemKind
    members: tuple[str, ...]
    value: str
    message: str
    reason: str | None = None  # an unreadable config's decode or OS error

    @property
    def needs_a_person(self) -> bool:
        """False for drift, which the next listing reconciles by itself (every Go-tool
        write causes some); True for what only a person can fix."""
        return self.kind != "drift"

    def __str__(self) -> str:
        return self.message


@dataclass
class ReconcileReport:
    """What a reconcile changed (or, dry run, would change), by member name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    # Paths of temp files a killed write left (full runs only; see disk/sweep.py).
    swept: list[str] = field(default_factory=list)
    # Why each unreadable member cannot be read, by name (the decode or OS error).
    reasons: dict[str, str] = field(default_factory=dict)
    # Directories under the wrong cluster, as cluster/name (the form `rm` takes).
    strays: list[str] = field(default_factory=list)

    @property
    def needs_a_person(self) -> bool:
        """Conflicts, unreadable configs or strays remain: reconcile cannot fix them."""
        return bool(self.unreadable or self.conflicts or self.strays)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.released or self.swept)


@dataclass
class Removal:
    """What Store.remove() did: members removed, patterns that matched none, failures."""

    removed: list[str] = field(default_factory=list)  # as member_label(): cluster/name if stray
    unknown: list[str] = field(default_factory=list)
    failed: list[FleetboxError] = field(default_factory=list)
    dry_run: bool = False  # removed lists what would go; nothing did
    confirmed: bool = True  # False: the confirm callback declined, nothing was removed


EventKind = Literal[
    "created", "changed", "removed", "became-unreadable", "readable-again",
    "conflict-appeared", "conflict-cleared", "ip-reserved", "reservation-released",
    "history-started",
]  # fmt: skip
"""What an Event says happened; ``history-started`` opens the history of a new index."""

EVENT_KINDS: Final[tuple[str, ...]] = get_args(EventKind)
"""Every EventKind, in the order above."""


@dataclass(frozen=True, slots=True)
class Event:
    """One change the index recorded (Store.history()).

    *who* is ``disk`` for a change found on disk (the Go tool, an editor, a crash: the writer
    is unknown) and ``fleetbox_db (pid N)`` for a Store write. *fields* maps each changed
    config field (and ``state``) to (old, new); *ip* is the address the member held after the
    event (before it, when it let go).
    """

    id: int
    at: datetime
    cluster: str | None
    name: str | None
    kind: str
    who: str
    fields: dict[str, tuple[Any, Any]]
    ip: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer of Store.query(): column names and rows, in the query's order."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


# -- values nested deeper than the recursion limit ------------------------------------------
# ``extra`` holds JSON as deep as Go reads it (10000 levels): Python's == and deepcopy recurse
# and would raise RecursionError on it, so VM and Fixture compare and copy through these.

_Record = TypeVar("_Record")


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` for JSON values, also nested past the recursion limit (Python's == recurses)."""
    try:
        return bool(a == b)
    except RecursionError:
        pass
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if x is y:  # as Python's list and dict comparisons do, so [nan] == [nan] holds here too
            continue
        if type(x) is list and type(y) is list:
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif type(x) is dict and type(y) is dict:
            if x.keys() != y.keys():
                return False
            pending.extend((item, y[key]) for key, item in x.items())
        elif x != y:
            return False
    return True


def _deep_copy(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)`` for JSON values, also nested past the recursion limit.

    Lists and dicts are copied here, anything else by ``copy.deepcopy``; a list or dict found
    twice is copied once, as deepcopy does.
    """
    if type(value) is not list and type(value) is not dict:
        return copy.deepcopy(value, memo)
    if id(value) in memo:
        return memo[id(value)]
    top: Any = type(value)()
    memo[id(value)] = top
    # The copies being filled, each with the items of its original not yet copied.
    stack: list[tuple[Iterator[Any], Any]] = [(_items(value), top)]
    while stack:
        items, into = stack[-1]
        for key, item in items:
            if type(item) is not list and type(item) is not dict:
                _put(into, key, copy.deepcopy(item, memo))
            elif id(item) in memo:
                _put(into, key, memo[id(item)])
            else:
                memo[id(item)] = child = type(item)()
                _put(into, key, child)
                stack.append((_items(item), child))
                break  # fill the new copy first
        else:
            stack.pop()
    return top


def _copy_record(record: _Record, memo: dict[int, Any]) -> _Record:
    """``copy.deepcopy`` of an object whose attributes (in ``__dict__``) may hold deep JSON values.

    The ``__deepcopy__`` of VM and Fixture: a shallow copy, then each attribute copied.
    """
    clone = copy.copy(record)
    memo[id(record)] = clone
    vars(clone).update((key, _deep_copy(value, memo)) for key, value in vars(record).items())
    return clone


def _items(value: list[Any] | dict[Any, Any]) -> Iterator[tuple[Any, Any]]:
    return iter(value.items()) if type(value) is dict else enumerate(value)


def _put(into: list[Any] | dict[Any, Any], key: Any, item: Any) -> None:
    if isinstance(into, dict):
        into[key] = item
    else:
        into.append(item)
