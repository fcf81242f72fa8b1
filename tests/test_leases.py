"""Reservations are leases on disk: nothing canonical lives only in the index (issue 12).

allocate_ip() writes <root>/leases/<address> and holds an flock on it while its process
lives. The index mirrors the leases, so a live owner's address survives the deletion,
quarantine or rebuild of index.db, and a dead owner's frees itself - whatever PID
namespace the owner runs in: the kernel, not a pid, says whether the lock is held.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetbox_db import VM, Store

SUBNET = "10.5.0.0/29"

OWNER = textwrap.dedent(
    """
    import sys
    from fleetbox_db import Store
    with Store.open(sys.argv[1]) as store:
        print(store.allocate_ip(sys.argv[2], sys.argv[3]), flush=True)
    sys.stdin.read()  # lives (and holds the lease) until the test closes stdin
    """
)


class Owner:
    """A child process that reserved an address and lives until stopped."""

    def __init__(self, root: Path, name: str, *prefix: str) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-c", OWNER, str(root), name, SUBNET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ip = self.proc.stdout.readline().strip()
        assert self.ip, self.proc.stderr.read() if self.proc.stderr else ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        """Let it exit (closing its stdin) and close our ends of its pipes."""
        self.proc.communicate(timeout=30)


@pytest.fixture
def owner(root: Path) -> Iterator[Owner]:
    with Store.open(root) as store:
        store.list()
    child = Owner(root, "web-1")
    try:
        yield child
    finally:
        child.stop()


def lease_files_in(root: Path) -> list[str]:
    """The lease files (owners' lock files, in .owners, aside)."""
    leases = root / "leases"
    return (
        sorted(p.name for p in leases.iterdir() if p.name != ".owners") if leases.exists() else []
    )


def break_index(root: Path, how: str) -> None:
    index = root / "index.db"
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
    else:  # garbage: quarantined and rebuilt on the next call
        index.write_bytes(b"this is not an index" * 100)


@pytest.mark.parametrize("how", ["deleted", "garbage"])
def test_a_live_owners_lease_survives_the_index(root: Path, owner: Owner, how: str) -> None:
    assert owner.ip == "10.5.0.2"
    break_index(root, how)
    with Store.open(root) as store:
        assert store.who_has(owner.ip) == "web-1"
        assert store.allocate_ip("db-1", SUBNET) == "10.5.0.3"  # not 10.5.0.2 again
        assert owner.ip not in store.free_ips(SUBNET)
        assert store.reconcile(full=True).released == []


def test_a_lease_the_index_never_saw_is_not_handed_out(root: Path, owner: Owner) -> None:
    """The index was rebuilt between allocations and no listing mirrored the lease yet:
    allocation finds the file taken and skips the address."""
    break_index(root, "deleted")
    with Store.open(root) as store:
        assert store.allocate_ip("db-1", SUBNET) == "10.5.0.3"
        assert store.who_has(owner.ip) == "web-1"


def test_a_dead_owners_lease_frees_itself(root: Path, owner: Owner) -> None:
    owner.kill()
    with Store.open(root) as store:
        assert store.reconcile().released == ["web-1"]
        assert store.who_has(owner.ip) is None
        assert store.allocate_ip("db-1", SUBNET) == owner.ip
    assert lease_files_in(root) == [owner.ip]  # db-1's now


def test_a_config_that_takes_the_address_ends_the_lease(root: Path) -> None:
    with Store.open(root) as store:
        ip = store.allocate_ip("web-1", SUBNET)
        assert (root / "leases" / ip).exists()
        store.create(VM("web-1", ip=ip))
        assert not (root / "leases" / ip).exists()
        assert store.reconcile().released == []


def test_a_rolled_back_allocation_leaves_no_lease(root: Path) -> None:
    with Store.open(root) as store:
        store.create(VM("web-1", mac="02:00:00:00:00:01"))
        with pytest.raises(Exception, match="mac"):
            store.create(VM("db-1", mac="02:00:00:00:00:01"), subnet=SUBNET)
        assert lease_files_in(root) == []
        assert store.free_ips(SUBNET, limit=1) == ["10.5.0.2"]


def unshare_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare --pid")
def test_a_lease_held_in_another_pid_namespace_lives(root: Path) -> None:
    """A container sharing the tree: its pids mean nothing here; its lock does."""
    with Store.open(root) as store:
        store.list()
    child = Owner(root, "web-1", "unshare", "--pid", "--fork", "--mount-proc")
    try:
        with Store.open(root) as store:
            assert store.reconcile().released == []
            assert store.who_has(child.ip) == "web-1"
            assert store.allocate_ip("db-1", SUBNET) != child.ip
    finally:
        child.stop()
    with Store.open(root) as store:
        assert store.reconcile().released == ["web-1"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as sudo")
def test_under_sudo_leases_belong_to_the_invoking_user(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later run as that user must be able to remove a dead lease (as with the index)."""
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    with Store.open(root) as store:
        ip = store.allocate_ip("web-1", SUBNET)
    owners = root / "leases" / ".owners"
    for path in (root / "leases", root / "leases" / ip, owners, *owners.iterdir()):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path


PROBER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fleetbox_db.disk.leases import is_held
    directory, ip, stop = Path(sys.argv[1]), int(sys.argv[2]), time.monotonic() + 5
    print("ready", flush=True)
    while time.monotonic() < stop:
        is_held(directory, ip)
    """
)


def test_taking_a_lease_while_listings_probe_it(tmp_path: Path) -> None:
    """Every listing probes each lease with a brief shared lock: a take() that lands on one
    waits it out instead of failing (seen in CI as BlockingIOError from create)."""
    from fleetbox_db.disk import leases

    ip = 0x0A050002
    prober = subprocess.Popen(
        [sys.executable, "-c", PROBER, str(tmp_path), str(ip)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert prober.stdout is not None
        assert prober.stdout.readline().strip() == "ready"
        for _ in range(300):
            assert leases.take(tmp_path, ip, "web-1", SUBNET)
            leases.release(tmp_path, ip)
    finally:
        prober.communicate(timeout=30)


TAKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fleetbox_db.disk import leases
    assert leases.take(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], "10.5.0.0/29")
    print("taken", flush=True)
    sys.stdin.read()
    """
)


class Taker:
    """A child process holding the lease of one address through disk/leases.py itself."""

    def __init__(self, directory: Path, ip: int, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TAKER, str(directory), str(ip), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "taken"

    def stop(self) -> None:
        self.proc.communicate(timeout=30)


def test_releasing_an_address_we_do_not_hold_leaves_its_lease(tmp_path: Path) -> None:
    """release() ends this process's lease only: another process's live one stays."""
    from fleetbox_db.disk import leases

    ip = 0x0A050002
    other = Taker(tmp_path, ip, "web-1")
    try:
        leases.release(tmp_path, ip)
        assert leases.is_held(tmp_path, ip)
        assert leases.read(tmp_path, ip) == leases.Lease(ip, "web-1", SUBNET)
    finally:
        other.stop()


def test_a_lease_ended_under_us_and_taken_anew_is_not_ours_to_remove(tmp_path: Path) -> None:
    """Seen in CI as one address handed out twice: a process ended a lease whose file had
    since been ended by another writer and taken anew by a third, removing the new one."""
    from fleetbox_db.disk import leases

    ip = 0x0A050002
    assert leases.take(tmp_path, ip, "churn-1", SUBNET)
    leases.end(tmp_path, leases.Lease(ip, "churn-1", SUBNET))  # another writer, say
    other = Taker(tmp_path, ip, "alloc-1")
    try:
        leases.release(tmp_path, ip)  # our stale lease: the file is alloc-1's now
        assert leases.read(tmp_path, ip) == leases.Lease(ip, "alloc-1", SUBNET)
        assert leases.is_held(tmp_path, ip)
    finally:
        other.stop()


def test_ending_a_lease_checks_whom_it_was_handed_to(tmp_path: Path) -> None:
    """A writer ends the lease of the name whose row it dropped, never a newer one's."""
    from fleetbox_db.disk import leases

    ip = 0x0A050002
    other = Taker(tmp_path, ip, "alloc-1")
    try:
        leases.end(tmp_path, leases.Lease(ip, "churn-1", SUBNET))
        assert leases.is_held(tmp_path, ip)
        leases.end(tmp_path, leases.Lease(ip, "alloc-1", SUBNET))
        assert not (tmp_path / "10.5.0.2").exists()
    finally:
        other.stop()


def test_a_config_ends_a_lease_another_live_process_holds(root: Path, owner: Owner) -> None:
    """The lease ends inside the writing transaction: no later step removes it by address."""
    with Store.open(root) as store:
        store.create(VM("web-1", ip=owner.ip))
        assert not (root / "leases" / owner.ip).exists()
        store.delete("web-1")
        assert store.allocate_ip("db-1", SUBNET) == owner.ip
        assert store.reconcile().released == []
        assert store.who_has(owner.ip) == "db-1"


def test_a_lease_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    """leases() keeps what it read by file identity; a rewrite changes the identity (times)."""
    from fleetbox_db.disk import leases as lease_files
    from fleetbox_db.rules.ipam import parse_ipv4

    ip = parse_ipv4("10.5.0.2")
    assert lease_files.take(tmp_path, ip, "web-1", SUBNET)
    try:
        assert [x.name for x in lease_files.leases(tmp_path)] == ["web-1"]
        path = tmp_path / "10.5.0.2"
        data = path.read_bytes()
        with open(path, "r+b") as f:  # same inode, same size: only the times tell
            f.write(data.replace(b"web-1", b"web-2"))
        assert [x.name for x in lease_files.leases(tmp_path)] == ["web-2"]
        os.mkfifo(tmp_path / "10.5.0.3")  # never opened: it would release its writer
        (tmp_path / "10.5.0.4").write_text('{"name": "web-4", "subnet": "10.5.0.0/29"}')
        assert [x.name for x in lease_files.leases(tmp_path)] == ["web-2"]  # 10.5.0.4: dead
    finally:
        lease_files.release(tmp_path, ip)
    assert lease_files.leases(tmp_path) == []


def test_only_answers_that_involve_addresses_list_the_leases(
    root: Path, owner: Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allocator's lease is on disk before its commit: an answer that compared leases
    would need an in-memory copy each time. list(), vms(), members() and entries() hold no
    address a lease could change, so they never list them; who_has and free_ips must."""
    from fleetbox_db.disk import leases as lease_files

    listed: list[int] = []
    real = lease_files.leases

    def counted(directory: Path, *within: Any) -> list[lease_files.Lease]:
        listed.append(1)
        return real(directory, *within)

    monkeypatch.setattr(lease_files, "leases", counted)
    with Store.open(root) as store:
        store.create(VM("db-1"))
        store.list()
        store.vms()
        store.members("db")
        store.entries()
        assert listed == [1]  # create's own write, under the lock
        assert store.who_has(owner.ip) == "web-1"
        assert owner.ip not in store.free_ips(SUBNET)
        assert len(listed) >= 3


def test_a_reader_recording_a_config_change_lists_no_lease(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list() and vms() record what they found when the write lock is free. Listing the
    leases again under the lock (hundreds beside an allocator, up to 30 ms measured)
    would hold every writer back for drift no such answer shows: it is left to the next
    answer that involves addresses, which releases a dead owner's reservation as before."""
    from helpers import later, put

    from fleetbox_db.disk import leases as lease_files

    dead = Owner(root, "web-1")
    dead.kill()  # its reservation row stays until an address answer or a writer
    listed: list[int] = []
    real = lease_files.leases

    def counted(directory: Path, *within: Any) -> list[lease_files.Lease]:
        listed.append(1)
        return real(directory, *within)

    with Store.open(root, clock=later) as store:
        monkeypatch.setattr(lease_files, "leases", counted)
        put(root, "db-1", "10.5.0.5")
        assert store.list() == ["db-1"]  # recorded: the next answer reads nothing
        put(root, "db-2", "10.5.0.6")
        assert [vm.name for vm in store.vms()] == ["db-1", "db-2"]
        assert listed == []
        assert store.who_has(dead.ip) is None
        assert dead.ip in store.free_ips(SUBNET)
        assert listed
    assert lease_files_in(root) == []


def test_an_answer_compares_only_the_leases_of_the_addresses_it_shows(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """who_has(ip) shows one address and free_ips(subnet) those of a subnet: the leases of
    other addresses are neither stat-ed nor read for them (beside an allocator holding 500
    in another subnet, listing them was an eighth of every such call), nor their rows
    compared. A dead owner's reservation is released by the first answer that shows it."""
    from fleetbox_db.disk import leases as lease_files
    from fleetbox_db.rules.ipam import parse_ipv4

    dead = Owner(root, "web-1")  # 10.5.0.2
    dead.kill()
    far = [parse_ipv4(f"10.6.0.{i}") for i in range(2, 12)]
    for i, ip in enumerate(far):
        assert lease_files.take(root / "leases", ip, f"far-{i}", "10.6.0.0/24")
    looked_at: list[int] = []
    real = lease_files._identity

    def counted(ip: int, st: os.stat_result) -> tuple[int, ...]:
        looked_at.append(ip)
        return real(ip, st)

    try:
        with Store.open(root) as store:
            store.list()
            monkeypatch.setattr(lease_files, "_identity", counted)
            assert store.who_has("10.6.0.5") == "far-3"
            assert looked_at == [parse_ipv4("10.6.0.5")]
            looked_at.clear()
            assert store.free_ips("10.5.0.0/29") == [f"10.5.0.{i}" for i in range(2, 7)]
            # Listed for the plan, and again under the lock, which released it.
            assert looked_at == [parse_ipv4(dead.ip)] * 2
            assert store.who_has(dead.ip) is None
            assert store.free_ips("10.6.0.0/28", limit=2) == ["10.6.0.12", "10.6.0.13"]
    finally:
        for ip in far:
            lease_files.release(root / "leases", ip)


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fleetbox_db.disk import leases
    for ip in sys.argv[2:]:
        assert leases.take(Path(sys.argv[1]), int(ip), "web-" + ip, "10.5.0.0/29")
    print("ok", flush=True)
    sys.stdin.read()
    """
)


def test_one_owner_probe_answers_for_all_its_leases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from fleetbox_db.disk import lease_owners
    from fleetbox_db.disk import leases as lease_files

    monkeypatch.setattr(lease_files, "_SETTLED_NS", 0)  # remembered at once, not after 2 s

    ips = [str(0x0A050002 + i) for i in range(3)]
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), *ips],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ok"
    (token,) = os.listdir(tmp_path / ".owners")
    assert [x.name for x in lease_files.leases(tmp_path)] == [f"web-{ip}" for ip in ips]
    # The same files again: their owner's lock answers for them, and none is opened. Once
    # the owner is dead, the test holds each lease file's own lock: were the files probed,
    # they would read as held.
    held = [os.open(tmp_path / lease_files.format_ipv4(int(ip)), os.O_RDONLY) for ip in ips]
    try:
        child.kill()
        child.communicate()
        for fd in held:
            fcntl.flock(fd, fcntl.LOCK_EX)
        dfd = os.open(tmp_path, os.O_RDONLY)
        try:
            assert lease_owners.alive(dfd, token) is False
        finally:
            os.close(dfd)
        assert lease_files.leases(tmp_path) == []
    finally:
        for fd in held:
            os.close(fd)
    # The next process that takes a lease removes the dead owner's file.
    assert lease_files.take(tmp_path, 0x0A050006, "db-1", SUBNET)
    try:
        assert token not in os.listdir(tmp_path / ".owners")
    finally:
        lease_files.release(tmp_path, 0x0A050006)


def test_a_lease_without_an_owner_or_with_a_forged_one_is_probed_itself(tmp_path: Path) -> None:
    """Leases written by versions without owners, or naming a path instead of a token,
    are alive exactly while their own file's lock is held."""
    import fcntl

    from fleetbox_db.disk import leases as lease_files

    for address, record in [
        ("10.5.0.2", '{"name": "web-1", "subnet": "10.5.0.0/29"}'),
        # A path to a file nobody locks: trusted, it would say the lease is dead.
        ("10.5.0.3", '{"name": "web-2", "subnet": "10.5.0.0/29", "owner": "../unlocked"}'),
    ]:
        (tmp_path / ".owners").mkdir(exist_ok=True)
        (tmp_path / "unlocked").write_text("")
        path = tmp_path / address
        path.write_text(record)
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            assert [x.ip for x in lease_files.leases(tmp_path)] == [lease_files.parse_ipv4(address)]
            assert lease_files.leases(tmp_path) != []  # read again: not remembered
        finally:
            os.close(fd)
        assert lease_files.leases(tmp_path) == []
        path.unlink()


def test_a_lease_file_changed_within_a_tick_is_read_every_time(tmp_path: Path) -> None:
    """A lease ended and taken anew within one timestamp tick can keep size, times and a
    reused inode number: until it has settled, it is read and probed on every listing."""
    from fleetbox_db.disk import leases as lease_files

    lease_files._read_before.clear()
    ip = lease_files.parse_ipv4("10.5.0.2")
    assert lease_files.take(tmp_path, ip, "web-1", SUBNET)
    try:
        assert [x.name for x in lease_files.leases(tmp_path)] == ["web-1"]
        assert lease_files._read_before == {}
    finally:
        lease_files.release(tmp_path, ip)


TWO_LEASES = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fleetbox_db.disk import leases
    for ip in (0x0A050002, 0x0A050003):  # 10.5.0.2 and 10.5.0.3, both for web-1
        assert leases.take(Path(sys.argv[1]) / "leases", ip, "web-1", sys.argv[2])
    print("taken", flush=True)
    sys.stdin.read()
    """
)


def test_two_live_leases_naming_one_member_in_one_subnet(root: Path) -> None:
    """Nothing on disk stops two lease files from naming the same member (one written by
    hand, two trees merged): the index mirrors both, and every write still works. Before
    fleetbox_0008 a unique index made every write fail until their owner died."""
    with Store.open(root) as store:
        store.list()
    holder = subprocess.Popen(
        [sys.executable, "-c", TWO_LEASES, str(root), SUBNET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "taken\n"
        with Store.open(root) as store:
            report = store.reconcile()
            assert report.released == []
            assert [store.who_has(ip) for ip in ("10.5.0.2", "10.5.0.3")] == ["web-1", "web-1"]
            assert store.free_ips(SUBNET) == ["10.5.0.4", "10.5.0.5", "10.5.0.6"]
            assert store.allocate_ip("db-1", SUBNET) == "10.5.0.4"
            assert store.allocate_ip("web-1", SUBNET) == "10.5.0.2"  # the lower of its two
            store.create(VM("api-1"), subnet=SUBNET)
            assert store.load("api-1").ip == "10.5.0.5"
            assert store.check() == []
    finally:
        holder.communicate(timeout=30)


def test_one_addresses_leases_are_the_listings_of_that_address(tmp_path: Path) -> None:
    """who_has(ip) looks up the one file an address can be named by instead of listing the
    directory: the same leases, whatever else the directory holds (dead leases, a FIFO,
    a directory or a symlink named by an address, names with leading zeros, junk)."""
    from fleetbox_db.disk import leases as lease_files
    from fleetbox_db.rules.ipam import Addresses, parse_ipv4

    directory = tmp_path / "leases"
    directory.mkdir()
    assert lease_files.take(directory, parse_ipv4("10.6.0.2"), "web-1", "10.6.0.0/24")
    assert lease_files.take(directory, parse_ipv4("10.6.0.3"), "web-2", "10.6.0.0/24")
    (directory / "10.6.0.4").write_text('{"name": "dead", "subnet": "10.6.0.0/24"}')
    os.mkfifo(directory / "10.6.0.5")
    (directory / "10.6.0.6").mkdir()
    (directory / "10.6.0.7").symlink_to(directory / "10.6.0.2")
    (directory / "010.6.0.8").write_text('{"name": "zeros", "subnet": "10.6.0.0/24"}')
    (directory / "junk").write_text("x")
    everything = lease_files.leases(directory)
    assert [lease.name for lease in everything] == ["web-1", "web-2"]
    for last in range(1, 10):
        ip = parse_ipv4(f"10.6.0.{last}")
        alone = lease_files.leases(directory, Addresses(ip, ip))
        assert alone == [lease for lease in everything if lease.ip == ip], last
    assert lease_files.leases(tmp_path / "missing", Addresses(1, 1)) == []
    for last in (2, 3):
        lease_files.release(directory, parse_ipv4(f"10.6.0.{last}"))
