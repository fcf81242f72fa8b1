"""A model of the whole store, driven by hypothesis through the API and behind its back.

The model is what disk holds (the bytes of every config.json, by member directory), what
the index must remember beyond disk (the last config that parsed, for a file that is torn
now; the live reservations of this process) and nothing else. Rules call the API (create,
save, delete, allocate_ip, ensure_dir) predicting each outcome, error class included, or
edit the tree the way the Go tool or a user does (in-place rewrites, also same size and
same mtime; rm -rf of a member or a cluster; cp -r; torn writes; stray directories; the
index deleted, replaced by garbage or emptied; a new process). After every step every
read answer of the Store must equal the brute-force answer from disk, and every config
the model wrote must still be on disk byte for byte.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import HOUR, SECOND, go_write
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from stress_helpers import (
    Key,
    conflicts,
    expected_problems,
    held_ips,
    hosts,
    ip_int,
    ip_text,
    no_temp_files,
    oracle_free,
    parse,
    problems_of,
    read_config,
    scaled,
    stray,
    walk,
    who_has,
)

from fleetbox_db import (
    VM,
    Entry,
    Fixture,
    FleetboxError,
    InvalidValueError,
    IPConflictError,
    MACConflictError,
    Store,
    SubnetExhaustedError,
    VMExistsError,
    VMNotFoundError,
    cluster_name,
    generate_mac,
)
from fleetbox_db.rules.config import decode_config, encode_config
from fleetbox_db.rules.gojson import clean

SUBNET = "10.7.0.0/28"  # 13 hosts: runs out within one example
SMALL = "10.7.1.0/30"  # one host
SUBNETS = (SUBNET, SMALL)
# "w\udce9b-1" is the Latin-1 name b"w\xe9b-1", not UTF-8, as Go's mkdir may have made it.
NAMES = ("web-1", "web-2", "web-10", "db", "db-1", "ü-1", "a b-3", os.fsdecode(b"w\xe9b-1"))
CLUSTERS = tuple(sorted({cluster_name(n) for n in NAMES} | {"zz"}))
IPS = (*(ip_text(v) for v in hosts(SUBNET)[:5]), ip_text(hosts(SMALL)[0]), "10.7.9.9")
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02", "02:AA:00:00:00:03")
CREATED = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
GARBAGE = b"this is not an SQLite file\n" * 300


def _fine_ctime() -> bool:
    """True when a change right after a stat always gets a new ctime (multigrain stamps).

    Without it, two same-size rewrites inside one timestamp tick with mtime restored leave
    the whole signature unchanged, which only the racy guard (granularity > 0) can catch.
    """
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        for _ in range(200):
            os.utime(path, ns=(0, 0))
            before = os.stat(path).st_ctime_ns
            os.utime(path, ns=(0, 0))
            if os.stat(path).st_ctime_ns == before:
                return False
        return True
    finally:
        os.unlink(path)


if _fine_ctime():
    GRANULARITIES: tuple[int, ...] = (2 * SECOND, 50_000_000, 0)
    CLOCK_OFFSETS: tuple[int, ...] = (0, 0, -HOUR, HOUR)  # behind: always racy; ahead: never
else:
    GRANULARITIES, CLOCK_OFFSETS = (2 * SECOND, 50_000_000), (0, 0, -HOUR)

fixtures_strategy = st.lists(
    st.builds(
        Fixture,
        host_path=st.sampled_from(["/srv/data", "/srv/ü b"]),
        guest_path=st.just("/mnt/data"),
        label=st.sampled_from(["data", ""]),
    ),
    max_size=2,
)


class Exhausted(Exception):
    """The model's SubnetExhaustedError."""


@dataclass
class Member:
    data: bytes | None  # config.json bytes; None: no config (a configless member)
    seen: VM | None = None  # the config the index holds: the last that parsed, or None


def outcome(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, FleetboxError | None]:
    """(result, None) or (None, the FleetboxError raised); anything else propagates."""
    try:
        return call(*args, **kwargs), None
    except FleetboxError as exc:
        error = exc
    assert str(error), f"{type(error).__name__} without a message"
    return None, error


def go_order(key: Key) -> tuple[bytes, bytes]:
    return os.fsencode(key[0]), os.fsencode(key[1])


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.top = Path(tempfile.mkdtemp(prefix="fleetbox-stateful-"))
        self.root = self.top / "fleetbox"
        self.members: dict[Key, Member] = {}
        self.reservations: dict[tuple[str, str], int] = {}  # (name, subnet) -> address
        self.reset_pending = False
        self.granularity = self.clock_offset = 0
        self.store: Store | None = None

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
        shutil.rmtree(self.top, ignore_errors=True)

    @property
    def s(self) -> Store:
        assert self.store is not None
        return self.store

    @initialize(
        granularity=st.sampled_from(GRANULARITIES), clock_offset=st.sampled_from(CLOCK_OFFSETS)
    )
    def open_store(self, granularity: int, clock_offset: int) -> None:
        self.granularity, self.clock_offset = granularity, clock_offset
        self.reopen()

    def clock(self) -> int:
        return time.time_ns() + self.clock_offset

    def reopen(self) -> None:
        """A new process: no memory but what is on disk and in the index."""
        if self.store is not None:
            self.store.close()
        self.store = Store.open(self.root, clock=self.clock, granularity_ns=self.granularity)

    # -- the model ------------------------------------------------------------------------

    def settle(self) -> None:
        """What the index holds once it has looked at disk as it is now (idempotent)."""
        if self.reset_pending:  # a rebuilt index knows disk only: the configs as they are,
            # and the leases (this process holds them, so every reservation survives)
            self.reset_pending = False
            for member in self.members.values():
                member.seen = None
        for member in self.members.values():
            vm = parse(member.data)
            if vm is not None or member.data is None:  # a torn file keeps the last good one
                member.seen = vm

    def view(self) -> dict[Key, VM | None]:
        return {
            key: m.seen for key, m in sorted(self.members.items(), key=lambda kv: go_order(kv[0]))
        }

    def reserved(self) -> dict[int, str]:
        return {ip: name for (name, _), ip in self.reservations.items()}

    def keys(self, *, with_config: bool | None = None) -> list[Key]:
        return sorted(
            (
                k
                for k, m in self.members.items()
                if with_config is None or (m.data is not None) == with_config
            ),
            key=go_order,
        )

    def holders(self, value: int | str, kind: str, exclude: Key) -> list[Key]:
        found = []
        for key, vm in self.view().items():
            if vm is None or key == exclude:
                continue
            if kind == "ip" and ip_int(vm.ip) == value:
                found.append(key)
            if kind == "mac" and vm.mac and vm.mac.lower() == value:
                found.append(key)
        return found

    def allocate(self, name: str, subnet: str) -> int:
        """allocation.allocate() on the model; raises Exhausted. The caller rolls back."""
        key = (cluster_name(name), name)
        ip = self.reservations.get((name, subnet))
        if ip is not None:
            if all(k == key for k in self.holders(ip, "ip", ("", ""))):
                return ip
            del self.reservations[(name, subnet)]
        own = self.members[key].seen if key in self.members else None
        if own is not None and ip_int(own.ip) in hosts(subnet):
            value = ip_int(own.ip)
            assert value is not None
            return value
        free = oracle_free(subnet, held_ips(self.view()) | set(self.reserved()))
        if not free:
            raise Exhausted
        ip = ip_int(free[0])
        assert ip is not None
        self.reservations[(name, subnet)] = ip
        return ip

    def unique(self, key: Key, ip: str, mac: str) -> type[FleetboxError] | None:
        if ip:
            value = ip_int(ip)
            assert value is not None
            reserver = self.reserved().get(value)
            if self.holders(value, "ip", key) or reserver not in (None, key[1]):
                return IPConflictError
        if mac and self.holders(mac.lower(), "mac", key):
            return MACConflictError
        return None

    def wrote(self, key: Key, expected: VM) -> None:
        """The library wrote *expected* for *key*: check the file, then remember its bytes."""
        data = read_config(self.root, key)
        assert data is not None
        # JSON holds no raw bytes: Go (and we) write a name that is not UTF-8 with U+FFFD.
        expected = copy.copy(expected)
        expected.name = clean(expected.name)
        assert decode_config(data) == expected
        member = self.members.setdefault(key, Member(None))
        member.data, member.seen = data, expected  # recorded in the same transaction
        if expected.ip:  # the reservation turned into the config
            ip = ip_int(expected.ip)
            for held in [k for k, v in self.reservations.items() if k[0] == key[1] and v == ip]:
                del self.reservations[held]

    def expect(self, got: tuple[Any, FleetboxError | None], error: type[Exception] | None) -> Any:
        result, exc = got
        if error is None:
            assert exc is None, f"unexpected {type(exc).__name__}: {exc}"
            return result
        assert type(exc) is error, f"expected {error.__name__}, got {exc!r} / {result!r}"
        return None

    # -- the API --------------------------------------------------------------------------

    def pick(self, data: st.DataObject, candidates: list[str]) -> str:
        """Mostly one of *candidates* (so most calls do something), sometimes any name."""
        if candidates and data.draw(st.integers(0, 9), label="targeted") < 8:
            return data.draw(st.sampled_from(sorted(set(candidates))), label="name")
        return data.draw(st.sampled_from(NAMES), label="name")

    def named(self) -> list[str]:
        """Names with a member directory or a reservation."""
        return [k[1] for k in self.members if not stray(k)] + [n for n, _ in self.reservations]

    @rule(
        data=st.data(),
        ip=st.sampled_from(("", "", *IPS)),
        mac=st.sampled_from(("", "", *MACS)),
        subnet=st.sampled_from((None, SUBNET, SUBNET, SMALL)),
        cpus=st.integers(1, 9),
        fixtures=fixtures_strategy,
    )
    def create(
        self,
        data: st.DataObject,
        ip: str,
        mac: str,
        subnet: str | None,
        cpus: int,
        fixtures: list[Fixture],
    ) -> None:
        self.settle()
        name = self.pick(data, [n for n in NAMES if (cluster_name(n), n) not in self.members])
        key = (cluster_name(name), name)
        vm = VM(name, mac=mac, cpus=cpus, ip=ip, fixtures=fixtures, created_at=CREATED)
        expected = replace(vm, mac=mac.lower() or generate_mac(name), fixtures=list(fixtures))
        before = dict(self.reservations)
        error: type[Exception] | None = None
        if ip and subnet and ip_int(ip) not in hosts(subnet):
            error = InvalidValueError
        elif key in self.members and self.members[key].data is not None:
            error = VMExistsError
        else:
            try:
                if not ip and subnet:
                    expected.ip = ip_text(self.allocate(name, subnet))
                error = self.unique(key, expected.ip, expected.mac)
            except Exhausted:
                error = SubnetExhaustedError
        if error is not None:
            self.reservations = before  # the transaction rolled back
        result = self.expect(outcome(self.s.create, vm, subnet=subnet), error)
        if error is None:
            assert result == expected
            self.wrote(key, expected)

    @rule(
        data=st.data(),
        cpus=st.one_of(st.none(), st.integers(1, 9)),
        ip=st.one_of(st.none(), st.sampled_from(("", *IPS))),
        mac=st.one_of(st.none(), st.sampled_from(MACS)),
        fixtures=st.one_of(st.none(), fixtures_strategy),
    )
    def save(
        self,
        data: st.DataObject,
        cpus: int | None,
        ip: str | None,
        mac: str | None,
        fixtures: list[Fixture] | None,
    ) -> None:
        self.settle()
        name = self.pick(data, self.named())
        key = (cluster_name(name), name)
        member = self.members.get(key)
        base = parse(member.data) if member is not None else None
        if base is not None:
            loaded = self.s.load(name)
            assert loaded == base
            base = copy.copy(loaded)  # replace() would drop the created_at text read
            base.name = name
        else:
            base = VM(name, created_at=CREATED)
        vm = base
        if cpus is not None:
            vm.cpus = cpus
        if ip is not None:
            vm.ip = ip
        if mac is not None:
            vm.mac = mac
        if fixtures is not None:
            vm.fixtures = fixtures
        expected = replace(vm, mac=vm.mac.lower(), fixtures=list(vm.fixtures))
        error = VMNotFoundError if member is None else self.unique(key, vm.ip, vm.mac)
        result = self.expect(outcome(self.s.save, vm), error)
        if error is None:
            assert result == expected
            self.wrote(key, expected)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.settle()
        name = self.pick(data, self.named())
        key = (cluster_name(name), name)
        error = None if key in self.members else VMNotFoundError
        self.expect(outcome(self.s.delete, name), error)
        if error is None:
            del self.members[key]
            for held in [k for k in self.reservations if k[0] == name]:
                del self.reservations[held]
            if not any(k[0] == key[0] for k in self.members):
                assert not (self.root / "clusters" / key[0]).exists()

    @rule(data=st.data(), subnet=st.sampled_from(SUBNETS))
    def allocate_ip(self, data: st.DataObject, subnet: str) -> None:
        self.settle()
        name = self.pick(data, [k[1] for k in self.members if not stray(k)])
        before = dict(self.reservations)
        try:
            expected: str | None = ip_text(self.allocate(name, subnet))
        except Exhausted:
            self.reservations = before
            expected = None
        result = self.expect(
            outcome(self.s.allocate_ip, name, subnet),
            None if expected is not None else SubnetExhaustedError,
        )
        assert result == expected

    @rule(name=st.sampled_from(NAMES))
    def ensure_dir(self, name: str) -> None:
        key = (cluster_name(name), name)
        assert self.s.ensure_dir(name) == self.root / "clusters" / key[0] / name
        self.members.setdefault(key, Member(None))

    # -- behind the library's back --------------------------------------------------------

    def path(self, key: Key) -> Path:
        return self.root / "clusters" / key[0] / key[1]

    @rule(
        data=st.data(),
        how=st.sampled_from(
            ["cpus", "ip", "mac", "unknown-key", "same-size", "torn", "torn", "rm-config"]
        ),
    )
    def go_edits_a_config(self, data: st.DataObject, how: str) -> None:
        """The Go tool or a user writes a config in place (os.WriteFile: no rename)."""
        keys = self.keys(with_config=True) if how in ("torn", "rm-config") else self.keys()
        if not keys:
            return
        key = data.draw(st.sampled_from(keys), label="member")
        member, path = self.members[key], self.path(key) / "config.json"
        old = member.data
        vm = parse(old) or VM(key[1], created_at=CREATED)
        digit = re.search(rb'"cpus": ([1-9]),', old) if old is not None else None
        new: bytes | None
        if how == "rm-config":
            path.unlink()
            new = None
        elif how == "torn":  # Go died halfway through its write
            assert old is not None
            new = old[: data.draw(st.integers(0, max(0, len(old) - 1)), label="cut")]
            go_write(path, new)
        elif how == "same-size" and old is not None and digit is not None:
            # Same inode, same size, same mtime: only ctime (or the racy guard) can tell.
            before = os.stat(path)
            new = (
                old[: digit.start(1)] + b"%d" % (int(digit.group(1)) % 9 + 1) + old[digit.end(1) :]
            )
            go_write(path, new)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.stat(path).st_size == before.st_size
        else:
            if how == "ip":
                vm.ip = data.draw(st.sampled_from(IPS), label="ip")
            elif how == "mac":
                vm.mac = data.draw(st.sampled_from(MACS), label="mac")
            elif how == "unknown-key":
                vm.extra["go_only"] = data.draw(st.sampled_from([1, "x", [1.5, None], {"a": {}}]))
            else:
                vm.cpus = data.draw(st.integers(1, 64), label="cpus")
            new = encode_config(vm)
            go_write(path, new)
        member.data = new
        self.first_look(data)

    @rule(
        data=st.data(),
        how=st.sampled_from(["rm-rf-member", "rm-rf-cluster", "cp-r", "stray", "stray-config"]),
        name=st.sampled_from(NAMES),
        cluster=st.sampled_from(CLUSTERS),
    )
    def user_edits_the_tree(self, data: st.DataObject, how: str, name: str, cluster: str) -> None:
        """rm -rf, cp -r and mkdir in clusters/, as a user or a script would."""
        if how.startswith("stray"):
            key = (cluster, name)
            if not stray(key) or key in self.members:
                return
            self.path(key).mkdir(parents=True)
            content = None
            if how == "stray-config":
                ip = data.draw(st.sampled_from(("", *IPS)), label="ip")
                mac = data.draw(st.sampled_from(("", *MACS)), label="mac")
                content = encode_config(VM(name, mac=mac, ip=ip, created_at=CREATED))
                go_write(self.path(key) / "config.json", content)
            self.members[key] = Member(content)
        elif not self.members:
            return
        elif how == "rm-rf-member":
            key = data.draw(st.sampled_from(self.keys()), label="member")
            shutil.rmtree(self.path(key))
            del self.members[key]
        elif how == "rm-rf-cluster":
            gone = data.draw(st.sampled_from(sorted({k[0] for k in self.members})), label="cluster")
            shutil.rmtree(self.root / "clusters" / gone)
            for key in [k for k in self.members if k[0] == gone]:
                del self.members[key]
        else:  # cp -r to a new member directory, in its own cluster or (stray) another
            source = data.draw(st.sampled_from(self.keys()), label="source")
            target = (data.draw(st.sampled_from((cluster_name(name), cluster))), name)
            if target in self.members:
                return
            shutil.copytree(self.path(source), self.path(target), symlinks=True)
            self.members[target] = Member(self.members[source].data)
        self.first_look(data)

    @rule(
        data=st.data(),
        how=st.sampled_from(
            [
                "deleted",
                "deleted-with-wal-shm",
                "deleted-while-closed",
                "garbage-renamed-over",
                "garbage-in-place-while-closed",
                "emptied-while-closed",
            ]
        ),
    )
    def someone_breaks_the_index(self, data: st.DataObject, how: str) -> None:
        index = self.root / "index.db"
        closed = how.endswith("while-closed")
        if closed:
            self.s.close()
            self.store = None
        if how.startswith("deleted"):
            suffixes = ("",) if how == "deleted" else ("", "-wal", "-shm")
            for suffix in suffixes:
                Path(f"{index}{suffix}").unlink(missing_ok=True)
        elif how == "garbage-renamed-over":  # another process swaps the file under us
            spare = self.root / "garbage.tmp"
            spare.write_bytes(GARBAGE)
            os.rename(spare, index)
        else:
            go_write(index, GARBAGE if how.startswith("garbage") else b"")
        if closed:
            self.reopen()
        self.reset_pending = True
        self.first_look(data)

    @rule()
    def new_process(self) -> None:
        self.reopen()

    # -- the oracle -----------------------------------------------------------------------

    def first_look(self, data: st.DataObject) -> None:
        """The first call after a change behind the back, which must see it already."""
        look = data.draw(
            st.sampled_from(
                [
                    self.check_list,
                    self.check_vms,
                    self.check_free_ips,
                    self.check_who_has,
                    self.check_entries,
                    self.check_members,
                    self.check_check,
                    self.check_reconcile,
                ]
            )
        )
        look()

    def check_list(self) -> None:
        self.settle()
        assert self.s.list() == [k[1] for k in walk(self.root)]

    def check_vms(self) -> None:
        self.settle()
        expected = [parse(self.members[k].data) for k in self.keys() if not stray(k)]
        assert self.s.vms() == [vm for vm in expected if vm is not None]

    def check_free_ips(self) -> None:
        self.settle()
        held = held_ips(self.view()) | set(self.reserved())
        for subnet in SUBNETS:
            assert self.s.free_ips(subnet) == oracle_free(subnet, held), subnet
        assert self.s.free_ips(SUBNET, limit=2) == oracle_free(SUBNET, held)[:2]

    def check_who_has(self) -> None:
        self.settle()
        view, reserved = self.view(), self.reserved()
        for value in (*IPS, *(ip_text(v) for v in reserved), *(m.lower() for m in MACS)):
            assert self.s.who_has(value) == who_has(view, reserved, value), value

    def check_entries(self) -> None:
        self.settle()
        view = self.view()
        clashing = {
            n for _, _, names in conflicts((k, v) for k, v in view.items() if v) for n in names
        }
        expected = []
        for key, seen in view.items():
            data = self.members[key].data
            if stray(key):
                state = "stray"
            elif data is None:
                state = "configless"
            elif parse(data) is None:
                state = "unreadable"
            else:
                state = "conflict" if key[1] in clashing else "ok"
            expected.append(Entry(key[1], key[0], state, seen))
        found = self.s.entries()
        # Only an unreadable member says why (the model does not know the decode's words).
        assert [e.reason is not None for e in found] == [e.state == "unreadable" for e in found]
        assert [replace(e, reason=None) for e in found] == expected

    def check_members(self) -> None:
        self.settle()
        for cluster in CLUSTERS:
            expected = [k[1] for k in self.keys() if k[0] == cluster]
            assert self.s.members(cluster) == expected, cluster

    def check_check(self) -> None:
        """Before a reconcile check() may add drift, or report a broken index (it changes
        nothing, so it does not rebuild one), but never misses a problem on disk."""
        self.settle()
        configs = {k: self.members[k].data for k in self.keys()}
        found = problems_of(self.s)
        on_disk = {p for p in found if p[0] not in ("drift", "index")}
        assert on_disk == expected_problems(self.root, configs)

    def check_reconcile(self) -> None:
        self.settle()
        dry = self.s.reconcile(dry_run=True)
        report = self.s.reconcile()
        fields = ("added", "updated", "removed", "unreadable", "conflicts", "released")
        assert {f: getattr(dry, f) for f in fields} == {f: getattr(report, f) for f in fields}
        unreadable = [
            k[1]
            for k in self.keys(with_config=True)
            if not stray(k) and parse(self.members[k].data) is None
        ]
        assert report.unreadable == unreadable
        got = {(c.kind, c.value, c.members) for c in report.conflicts}
        assert got == conflicts((k, v) for k, v in self.view().items() if v is not None)
        configs = {k: self.members[k].data for k in self.keys()}
        assert problems_of(self.s) == expected_problems(self.root, configs)  # no drift left

    @invariant()
    def store_agrees_with_disk(self) -> None:
        if self.store is None:
            return
        # Nothing the model wrote was lost or altered, and nothing else appeared.
        assert walk(self.root) == self.keys()
        for key, member in self.members.items():
            assert read_config(self.root, key) == member.data, key
        assert no_temp_files(self.root) == []
        self.check_list()
        self.check_vms()
        self.check_free_ips()
        self.check_who_has()
        self.check_entries()
        self.check_members()
        self.check_reconcile()


StoreModel.TestCase.settings = settings(
    max_examples=scaled(40, 120),
    stateful_step_count=scaled(30, 50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreModel = pytest.mark.slow(StoreModel.TestCase)


def test_regression_same_size_rewrite_with_old_mtime_in_one_ctime_tick_is_missed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "fleetbox"
    path = root / "clusters" / "web" / "web-1" / "config.json"
    path.parent.mkdir(parents=True)
    go_write(path, encode_config(VM("web-1", ip="10.7.0.2", created_at=CREATED)))
    old = os.stat(path).st_mtime_ns - HOUR
    os.utime(path, ns=(old, old))  # an old file: its mtime alone says "settled"
    with Store.open(root, granularity_ns=2 * SECOND) as store:
        assert [vm.ip for vm in store.vms()] == ["10.7.0.2"]
        go_write(path, encode_config(VM("web-1", ip="10.7.0.3", created_at=CREATED)))
        os.utime(path, ns=(old, old))
        # On a filesystem whose ctime ticks coarsely (Linux before multigrain timestamps),
        # the index recorded this very ctime for the previous change in the same tick.
        ctime = os.stat(path).st_ctime_ns
        with contextlib.closing(sqlite3.connect(root / "index.db")) as conn, conn:
            conn.execute("UPDATE members SET ctime_ns = ? WHERE name = 'web-1'", (ctime,))
        assert [vm.ip for vm in store.vms()] == ["10.7.0.3"]
