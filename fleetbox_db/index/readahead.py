"""The configs of a rebuild read by a forked child while this process writes the rows.

A rebuild of 10,000 members spent ~200 ms reading and decoding configs and ~170 ms writing
their rows, one after the other on one CPU (Python runs one thread at a time). Here a child
(disk/forked.py) observes the members apply() is about to read, in its order and exactly as
apply() would (Reconciler.observe, pauses for a config caught mid-write included; it runs
under the parent's write lock, as the parent's own reads would), and sends each observation
as plain values: the VM as the config columns of its row (rows.config_values), turned back
into a VM by rows.vm_from_row, as the index does for every answer. The parent takes an
observation only for the very member it is at; from the first one missing (a child that
failed, was killed, or sent something else) it reads the rest itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from fleetbox_db.disk.forked import Child
from fleetbox_db.disk.observe import Observation
from fleetbox_db.disk.scan import MemberDir, Signature
from fleetbox_db.index.rows import CONFIG_FIELDS, config_values, fixture_rows, vm_from_row
from fleetbox_db.records import MemberState, built_fixture
from fleetbox_db.rules.gojson import decode_json_value

__all__ = ["MIN_READS", "ReadAhead"]

#: From this many reads a child pays for its fork: a rebuild, not a listing's few changes.
MIN_READS: Final = 2048
#: Observations per frame: the parent waits for at most this many reads before its first.
_FRAME: Final = 256

_SPELLING: Final = CONFIG_FIELDS.index("spelling")
_STATES: Final = {str(state): state for state in MemberState}
_new: Final = tuple.__new__

Wire = tuple[Any, ...]


class ReadAhead:
    """A child observing *members* in order, taken one by one with take()."""

    __slots__ = ("_child", "_frames", "_pending")

    def __init__(self, child: Child) -> None:
        self._child = child
        self._frames: Iterator[list[Wire]] | None = child.frames()
        self._pending: Iterator[Wire] = iter(())

    @classmethod
    def start(
        cls, observe: Callable[[MemberDir], Observation], members: Sequence[MemberDir]
    ) -> ReadAhead | None:
        """A child observing *members* with *observe*; None for fewer than MIN_READS or
        when no child can be started (forked.Child.start)."""
        if len(members) < MIN_READS:
            return None

        def frames() -> Iterator[list[Wire]]:
            for start in range(0, len(members), _FRAME):
                yield [_wire(observe(m)) for m in members[start : start + _FRAME]]

        child = Child.start(frames)
        return None if child is None else cls(child)

    def take(self, member: MemberDir) -> Observation | None:
        """The child's observation of *member*, the next it sent; None when it has none
        (then neither for any member after it)."""
        if self._frames is None:
            return None
        wire = next(self._pending, None)
        if wire is None:
            frame = next(self._frames, None)
            self._pending = iter(frame if isinstance(frame, list) else ())
            wire = next(self._pending, None)
        obs = None if wire is None else _observation(member, wire)
        if obs is None:
            self.stop()
        return obs

    def stop(self) -> None:
        """Stop the child and take nothing more from it."""
        self._frames = None
        self._child.stop()


def _wire(obs: Observation) -> Wire:
    """*obs* as values marshal writes: no str subclass (rules.spelling's Spelled, whose
    spellings the row's spelling column keeps), no tuple subclass."""
    vm, sig = obs.vm, obs.signature
    row = fixtures = None
    if vm is not None:
        row, fixtures = config_values(vm), [r[2:] for r in fixture_rows(0, vm.fixtures)]
        if row[_SPELLING] is not None:  # some of its strs are Spelled
            row = tuple(map(_plain, row))
            fixtures = [tuple(map(_plain, f)) for f in fixtures]
    return (
        _plain(obs.key.cluster),
        _plain(obs.key.name),
        str(obs.state),
        None if sig is None else tuple(sig),
        obs.verified_ns,
        obs.digest,
        obs.present,
        None if obs.reason is None else _plain(obs.reason),
        row,
        fixtures,
    )


def _plain(value: Any) -> Any:
    """*value*, a str subclass (Spelled) as a plain str."""
    return str.__str__(value) if isinstance(value, str) else value


def _observation(member: MemberDir, wire: Wire) -> Observation | None:
    """The Observation *wire* stands for, if it is one of *member*'s; else None."""
    try:
        cluster, name, state, sig, verified, digest, present, reason, row, fixtures = wire
        if cluster != member.cluster or name != member.name:
            return None
        vm = None
        if row is not None:
            made = [
                built_fixture(host, guest, label, decode_json_value(extra) if extra else {})
                for host, guest, label, extra in fixtures
            ]
            vm = vm_from_row(row, made)
        signature = None if sig is None else _new(Signature, sig)
        if signature is not None and len(signature) != len(Signature._fields):
            return None
        return Observation(
            member.key, _STATES[state], signature, verified, digest, vm, present, reason
        )
    except (TypeError, ValueError, KeyError):
        return None
