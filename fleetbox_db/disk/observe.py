"""One member directory read just now: its config's bytes, digest, parsed VM and state.

The one place a member's state is decided (ok, configless, unreadable, stray): the
reconciler records observations, check() and the disk-only answers report them, and a
write records the bytes it has just written the same way, without reading them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from fleetbox_db.disk.files import read_config_bytes
from fleetbox_db.disk.scan import MemberDir, Scan, Signature
from fleetbox_db.errors import ConfigError
from fleetbox_db.records import VM, Key, MemberState
from fleetbox_db.rules.config import decode_config
from fleetbox_db.rules.layout import is_stray, member_file

#: Pauses (s) before reading again a config that fails to parse within a tick of its last
#: change (observe_whole); after the last, it is unreadable.
TORN_PAUSES: Final = (0.0, 0.001, 0.004)

__all__ = [
    "TORN_PAUSES",
    "Clock",
    "caught_mid_write",
    "Observation",
    "Reparse",
    "observe",
    "observe_all",
    "observe_whole",
    "observe_written",
    "read_whole",
]

Clock = Callable[[], int]
"""Nanoseconds since the epoch (time.time_ns); injected so tests can make files old."""


class Observation(NamedTuple):
    """One member directory as read just now. A NamedTuple, not a frozen dataclass: a
    rebuild makes one per config (0.5 µs each against 1.6 µs), and every dataclass costs
    the CLI's start-up a fraction of a millisecond to define."""

    key: Key
    state: MemberState
    signature: Signature | None
    verified_ns: int  # the clock just before the read
    digest: str | None
    vm: VM | None
    present: bool  # config.json exists (parsed or not)
    # Why the config cannot be used: the decode error, or the OS error (permission denied).
    reason: str | None = None

    @property
    def keeps_last_config(self) -> bool:
        """An unreadable file keeps the row's last good config; a missing one holds none,
        nor does a stray one that cannot even be stat-ed (the scan shows both alike, see
        index/recorded.py)."""
        return self.present and not (self.signature is None and self.state == MemberState.STRAY)


def observe(
    clusters_dir: Path | str, member: MemberDir, clock: Clock, parse: Parse | None = None
) -> Observation:
    """Read and parse one member's config.json now (with *parse*, a Reparse, when given)."""
    key = member.key
    stray = is_stray(*key)
    path = member_file(clusters_dir, *key)
    verified = clock()
    try:
        data, sig = read_config_bytes(path, seen_regular=member.signature is not None)
    except FileNotFoundError:
        state = MemberState.STRAY if stray else MemberState.CONFIGLESS
        return Observation(key, state, None, verified, None, None, False)
    except OSError as exc:
        # No signature: recorded under the file's unchanged one, a passing error (EACCES
        # fixed later, EMFILE, EIO) would never be read again, and the member's address
        # would stay unknown. Without one, every listing retries the read.
        state = MemberState.STRAY if stray else MemberState.UNREADABLE
        reason = f"cannot be read: {exc.strerror or exc}"
        return Observation(key, state, None, verified, None, None, True, reason)
    return (parse or _parsed)(key, stray, path, data, sig, verified)


def observe_whole(
    clusters_dir: Path | str,
    member: MemberDir,
    clock: Clock,
    granularity_ns: int,
    parse: Parse | None = None,
) -> Observation:
    """observe(), reading again a config caught mid-write.

    One that does not parse and changed within the last tick (*granularity_ns*) was most
    likely read between Go's truncate and write (os.WriteFile): it is read again, after
    yielding the CPU, before it counts as unreadable - else every reader beside such a
    writer would record, and then undo, a broken member.
    """
    obs = observe(clusters_dir, member, clock, parse)
    if not caught_mid_write(obs, granularity_ns):
        return obs  # the common case, once per config of a rebuild: no lists, no closure

    def read(m: MemberDir) -> Observation:
        return observe(clusters_dir, m, clock, parse)

    return _paused(read, [member], [obs], [0], granularity_ns)[0]


def read_whole(
    read: Callable[[MemberDir], Observation],
    members: Sequence[MemberDir],
    granularity_ns: int,
    waits_for: Callable[[MemberDir], bool] = lambda member: True,
) -> list[Observation]:
    """*read* (an observe()) of each of *members*, in order; those caught mid-write that
    *waits_for* are read again after each of TORN_PAUSES, all of them after the same pause:
    a reader that met two or three of a Go writer's configs at once paused up to 24 ms,
    one round each."""
    found = [read(member) for member in members]
    waiting = [i for i, member in enumerate(members) if waits_for(member)]
    return _paused(read, members, found, waiting, granularity_ns)


def _paused(
    read: Callable[[MemberDir], Observation],
    members: Sequence[MemberDir],
    found: list[Observation],
    waiting: list[int],
    granularity_ns: int,
) -> list[Observation]:
    """*found* (the reads of *members*) with those at the indexes *waiting* that were
    caught mid-write read again after each pause, until none is."""
    for pause in TORN_PAUSES:
        torn = [i for i in waiting if caught_mid_write(found[i], granularity_ns)]
        if not torn:
            break
        time.sleep(pause)
        for i in torn:
            found[i] = read(members[i])
    return found


def caught_mid_write(obs: Observation, granularity_ns: int) -> bool:
    """*obs* did not parse, and its file changed within a tick (*granularity_ns*) of the read."""
    sig = obs.signature
    if obs.state is not MemberState.UNREADABLE or obs.vm is not None or sig is None:
        return False
    return max(sig.mtime_ns, sig.ctime_ns) + granularity_ns > obs.verified_ns


def observe_all(
    clusters_dir: Path | str,
    scan: Scan,
    clock: Clock,
    progress: Callable[[int, int], None] | None = None,
) -> list[Observation]:
    """observe() every member of *scan*, in order; *progress(done, total)* every thousand."""
    members = scan.members
    found: list[Observation] = []
    for i, member in enumerate(members, 1):
        found.append(observe(clusters_dir, member, clock))
        if progress is not None and (i % 1000 == 0 or i == len(members)):
            progress(i, len(members))
    return found


def observe_written(
    clusters_dir: Path | str, key: Key, data: bytes, sig: Signature, verified_ns: int
) -> Observation:
    """The observation a read of what atomic_write just wrote would give, without the read."""
    path = member_file(clusters_dir, *key)
    return _parsed(key, is_stray(*key), path, data, sig, verified_ns)


Parse = Callable[[Key, bool, str, bytes, Signature, int], Observation]
"""What observe() does with the bytes it read: _parsed, or a Reparse."""


class Reparse:
    """_parsed() for configs read again: the same bytes of the same member give the same
    observation, but for the signature and the time of the read, without digesting and
    parsing them again. Beside a Go tool re-saving configs unchanged in place, a reader
    parsed the same 8 configs again for every answer (about 5% of its CPU time).

    Keeps the last bytes of at most LIMIT members, forgotten all at once when full: a
    rebuild reads 100,000 configs through it, and any finer bookkeeping (an LRU order)
    cost it 1.4%. Their VMs are shared by the observations made from them, which no caller
    changes (the index writes rows from them; nothing hands them to a user).
    """

    LIMIT: Final = 256
    #: Larger configs are parsed every time: 256 of them at the 1 MB a config may have
    #: would hold 256 MB; at most LIMIT * LARGEST bytes are kept (4 MiB).
    LARGEST: Final = 16384

    def __init__(self) -> None:
        self._last: dict[Key, tuple[bytes, Observation]] = {}

    def __call__(
        self, key: Key, stray: bool, path: str, data: bytes, sig: Signature, verified: int
    ) -> Observation:
        last = self._last.get(key)
        if last is not None and last[0] == data:
            return last[1]._replace(signature=sig, verified_ns=verified)
        obs = _parsed(key, stray, path, data, sig, verified)
        if len(data) > self.LARGEST:
            self._last.pop(key, None)
            return obs
        if len(self._last) >= self.LIMIT:
            self._last.clear()
        self._last[key] = (data, obs)
        return obs


def _parsed(
    key: Key, stray: bool, path: str, data: bytes, sig: Signature, verified: int
) -> Observation:
    import hashlib  # here: its OpenSSL load is a tenth of `ls`'s imports, and `ls` on a
    # settled store reads no config

    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    reason = None
    try:
        vm: VM | None = decode_config(data, path)
    except ConfigError as exc:
        vm, reason = None, exc.reason
    if stray:
        state = MemberState.STRAY
    else:
        state = MemberState.OK if vm is not None else MemberState.UNREADABLE
    return Observation(key, state, sig, verified, digest, vm, True, reason)
