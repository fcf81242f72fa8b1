"""IP allocation across real processes: owner liveness, concurrent creates, SIGKILL mid-write.

Every child is a real Python process on the same storage root, killed with SIGKILL where the
test says so; nothing is mocked. Seeded tests print their seed (shown on failure); rerun
one with FLEETBOX_SEED=<seed>. FLEETBOX_STRESS=1 scales the loops up.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from internals import drop_lease_locks

from fleetbox_db import Store, SubnetExhaustedError

SUBNET = "192.168.5.0/24"
STRESS = os.environ.get("FLEETBOX_STRESS", "") not in ("", "0")
DEADLINE = 60.0  # seconds a child may take to answer before the test gives up on it

# A child that runs Store calls sent as JSON lines on stdin and answers each on stdout.
DRIVER = """\
import json, os, sys
from fleetbox_db import VM, FleetboxError, Store
store = Store.open(sys.argv[1])
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        if op == "allocate":
            out = store.allocate_ip(cmd["name"], cmd["subnet"])
        elif op == "create":
            vm = VM(cmd["name"], ip=cmd.get("ip", ""), mac=cmd.get("mac", ""))
            out = store.create(vm, subnet=cmd.get("subnet")).ip
        elif op == "free":
            out = store.free_ips(cmd["subnet"], limit=cmd.get("limit"))
        else:
            raise SystemExit(f"unknown op {op}")
        print(json.dumps({"ok": out}), flush=True)
    except FleetboxError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
"""

# A batch worker: waits for "go" on stdin, runs its plan, prints one JSON line per step.
# Anything but a FleetboxError is reported as "raw" (a bare sqlite3.OperationalError...).
WORKER = """\
import json, os, sys
from fleetbox_db import VM, FleetboxError, Store
plan = json.loads(sys.argv[2])
store = Store.open(sys.argv[1])
if plan["touch_index"]:
    store.free_ips(plan["subnet"], limit=1)
print("ready", flush=True)
sys.stdin.readline()
for step in plan["steps"]:
    result = dict(step)
    try:
        if step["op"] == "allocate_then_create":
            result["reserved"] = store.allocate_ip(step["name"], plan["subnet"])
        if step["op"] == "explicit":
            free = store.free_ips(plan["subnet"], limit=1)
            if not free:
                result.update(ok=False, error="NoFreeAddress")
                print(json.dumps(result), flush=True)
                continue
            step = dict(step, ip=free[0])
            result["ip"] = free[0]
        vm = VM(step["name"], mac=step["mac"], ip=step.get("ip", ""))
        written = store.create(vm, subnet=None if step.get("ip") else plan["subnet"])
        result.update(ok=True, ip=written.ip, mac=written.mac)
    except FleetboxError as exc:
        result.update(ok=False, error=type(exc).__name__, message=str(exc))
    except BaseException as exc:
        result.update(ok=False, raw=f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    print(json.dumps(result), flush=True)
"""

# Runs Store operations in a tight loop until SIGKILLed; prints "ready" once the store is open.
# A non-FleetboxError is printed as "RAW ..." and ends the child with status 3.
KILL_LOOP = """\
import json, os, random, sys
from dataclasses import replace
from fleetbox_db import VM, FleetboxError, Store
root, subnet, prefix, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
store = Store.open(root)
print("ready", flush=True)
mine = []
i = 0
while True:
    i += 1
    name = f"{prefix}-{i}"
    op = rng.choice(["create", "create", "allocate_then_create", "allocate_only", "delete",
                     "move"])
    try:
        if op == "create":
            mine.append(store.create(VM(name), subnet=subnet).name)
        elif op == "allocate_then_create":
            store.allocate_ip(name, subnet)
            mine.append(store.create(VM(name), subnet=subnet).name)
        elif op == "allocate_only":
            store.allocate_ip(name, subnet)
        elif op == "delete" and mine:
            store.delete(mine.pop(rng.randrange(len(mine))))
        elif op == "move" and mine:
            free = store.free_ips(subnet, limit=3)
            if free:
                vm = store.load(rng.choice(mine))
                store.save(replace(vm, ip=rng.choice(free)))
        if op != "delete" and rng.random() < 0.3 and len(mine) > 4:
            store.delete(mine.pop(0))
    except FleetboxError:
        pass
    except BaseException as exc:
        print(f"RAW {op} {type(exc).__module__}.{type(exc).__name__}: {exc}", flush=True)
        os._exit(3)
"""


# -- helpers ----------------------------------------------------------------------------------


def python(code: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


class Child:
    """A DRIVER process; call() sends one Store call and returns its JSON answer."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            python(DRIVER, root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        assert json.loads(self.readline()) == {"ready": self.pid}

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"child {self.pid} died: {self.proc.poll()}"
        return line

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.readline())
        return answer

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.answer()

    def exit_normally(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(DEADLINE) == 0

    def kill(self, reap: bool = True) -> None:
        os.kill(self.pid, signal.SIGKILL)
        if reap:
            assert self.proc.wait(DEADLINE) == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(root: Path) -> Iterator[Any]:
    """Start DRIVER children on the test's root; every one is killed and reaped at the end."""
    started: list[Child] = []

    def start() -> Child:
        child = Child(root)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


def reservation_rows(root: Path) -> list[tuple[str, str, int]]:
    """(name, ip, owner_pid) of every reservation, read with a separate connection."""
    with closing(sqlite3.connect(root / "index.db")) as conn:
        rows = conn.execute(
            "SELECT name, ip_int, owner_pid FROM reservations ORDER BY ip_int"
        ).fetchall()
    return [(n, str(ipaddress.IPv4Address(i)), pid) for n, i, pid in rows]


def hosts(subnet: str) -> list[str]:
    net = ipaddress.ip_network(subnet)
    first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1
    return [str(ipaddress.IPv4Address(v)) for v in range(first, last + 1)]


def process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def disk_configs(root: Path) -> dict[str, dict[str, Any]]:
    """Every config.json on disk, parsed with the stdlib: directory name -> JSON object."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "clusters").glob("*/*/config.json")):
        found[path.parent.name] = json.loads(path.read_bytes())
    return found


def seeded() -> int:
    seed = int(os.environ.get("FLEETBOX_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun with FLEETBOX_SEED={seed})")
    return seed


# -- reservations and their owner ---------------------------------------------------------------

TRIGGERS = {
    "reconcile": lambda s: s.reconcile().released,
    "list": lambda s: s.list(),
    "free_ips": lambda s: s.free_ips(SUBNET),
    "allocate_ip": lambda s: s.allocate_ip("db-1", SUBNET),
    "vms": lambda s: s.vms(),
}


@pytest.mark.parametrize(
    ("how", "trigger"),
    [
        pytest.param("exit", "reconcile", id="exit-reconcile"),
        pytest.param("sigkill", "list", id="sigkill-list"),
        pytest.param("sigkill", "free_ips", id="sigkill-free_ips"),
        pytest.param("exit", "allocate_ip", id="exit-allocate_ip"),
        pytest.param("sigkill", "vms", id="sigkill-vms"),
    ],
)
def test_reservation_is_released_once_its_process_is_dead(
    store: Store, root: Path, spawn: Any, how: str, trigger: str
) -> None:
    child = spawn()
    assert child.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    # Alive: kept, and not free for anyone else.
    assert store.reconcile(full=True).released == []
    assert store.free_ips(SUBNET, limit=1) == ["192.168.5.3"]
    assert store.who_has("192.168.5.2") == "web-1"
    assert reservation_rows(root) == [("web-1", "192.168.5.2", child.pid)]

    if how == "exit":
        child.exit_normally()
    else:
        child.kill()
    TRIGGERS[trigger](store)
    if trigger in ("list", "vms"):
        # No address is part of these answers: they do not look at leases, and the row
        # stays until an answer or a write that involves addresses looks.
        assert reservation_rows(root) == [("web-1", "192.168.5.2", child.pid)]
        assert store.who_has("192.168.5.2") is None
    if trigger == "allocate_ip":  # released first, so db-1 gets the lowest address
        assert reservation_rows(root) == [("db-1", "192.168.5.2", os.getpid())]
        assert store.free_ips(SUBNET, limit=1) == ["192.168.5.3"]
    else:
        assert reservation_rows(root) == []
        assert store.free_ips(SUBNET, limit=1) == ["192.168.5.2"]
    assert store.list() == []  # the child never created anything


def test_reconcile_reports_the_released_names(store: Store, root: Path, spawn: Any) -> None:
    child = spawn()
    child.call("allocate", name="web-1", subnet=SUBNET)
    child.call("allocate", name="web-2", subnet="10.1.0.0/16")
    child.kill()
    assert sorted(store.reconcile(dry_run=True).released) == ["web-1", "web-2"]
    assert len(reservation_rows(root)) == 2  # a dry run changes nothing
    report = store.reconcile()
    assert sorted(report.released) == ["web-1", "web-2"]
    assert report.changed
    assert store.free_ips(SUBNET, limit=1) == ["192.168.5.2"]
    assert store.reconcile().released == []


def test_live_owner_keeps_its_reservation_against_other_processes(
    store: Store, root: Path, spawn: Any
) -> None:
    owner, other = spawn(), spawn()
    assert owner.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    assert other.call("allocate", name="web-2", subnet=SUBNET) == {"ok": "192.168.5.3"}
    assert other.call("free", subnet=SUBNET, limit=1) == {"ok": ["192.168.5.4"]}
    answer = other.call("create", name="db-1", ip="192.168.5.2")
    assert answer["error"] == "IPConflictError"
    assert store.reconcile(full=True).released == []
    # The owner turns its reservation into the member's address.
    assert owner.call("create", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    assert [row[0] for row in reservation_rows(root)] == ["web-2"]
    assert store.who_has("192.168.5.2") == "web-1"


def test_allocate_is_idempotent_across_processes(store: Store, root: Path, spawn: Any) -> None:
    """Documented: a repeat from another process returns the reservation; the row keeps
    its first owner, so it is released when that process dies."""
    first, second = spawn(), spawn()
    assert first.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    assert second.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    assert reservation_rows(root) == [("web-1", "192.168.5.2", first.pid)]
    first.kill()
    assert store.reconcile().released == ["web-1"]
    # The second process creating web-1 now gets whatever is lowest and free; nothing is
    # ever held twice.
    assert store.allocate_ip("db-1", SUBNET) == "192.168.5.2"
    assert second.call("create", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.3"}


def test_zombie_owner_counts_as_dead(store: Store, root: Path, spawn: Any) -> None:
    child = spawn()
    assert child.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    child.kill(reap=False)
    deadline = time.monotonic() + DEADLINE
    while process_state(child.pid) != "Z":  # killed, but its parent (us) has not waited
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(child.pid, 0)  # the pid still exists
    assert store.reconcile().released == ["web-1"]
    assert store.free_ips(SUBNET, limit=1) == ["192.168.5.2"]
    assert process_state(child.pid) == "Z"
    child.close()


def test_a_stale_plan_never_releases_a_live_reservation(
    store: Store, root: Path, spawn: Any
) -> None:
    """A reader plans (no lock) while a writer releases the dead row and reserves anew.

    The write lock is held from here, so the reader has planned (the gone-* row is dead)
    and, since readers never wait for the lock, answers from its snapshot with the plan
    applied in memory: the address is free as of then. The allocator then takes the lock,
    releases the dead row and reserves the same address for a live owner, whose row must
    survive every later reconcile, the reader's included.
    """
    reader, allocator = spawn(), spawn()
    for attempt in range(3):
        store.allocate_ip(f"gone-{attempt}", SUBNET)  # the newest row, so its id is reused
        drop_lease_locks()  # its owner is gone: the lease is dead, its row not yet released
        hold = sqlite3.connect(root / "index.db", isolation_level=None)
        try:
            hold.execute("BEGIN IMMEDIATE")
            reader.send("free", subnet=SUBNET)  # plans: the gone-* row is dead
            time.sleep(0.6)
            allocator.send("allocate", name=f"live-{attempt}", subnet=SUBNET)
            time.sleep(0.05)
        finally:
            hold.close()  # rolls back, releasing the lock
        reader.answer()
        reserved = allocator.answer()["ok"]
        assert (f"live-{attempt}", reserved, allocator.pid) in reservation_rows(root)
        assert reserved not in reader.call("free", subnet=SUBNET)["ok"]
        assert (f"live-{attempt}", reserved, allocator.pid) in reservation_rows(root)


def test_reservation_from_a_child_turns_into_a_config(store: Store, root: Path, spawn: Any) -> None:
    child = spawn()
    assert child.call("allocate", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    assert child.call("create", name="web-1", subnet=SUBNET) == {"ok": "192.168.5.2"}
    child.kill()
    assert store.reconcile().released == []
    assert reservation_rows(root) == []
    assert store.load("web-1").ip == "192.168.5.2"
    assert store.free_ips(SUBNET, limit=1) == ["192.168.5.3"]


# -- concurrent creates in one small subnet -----------------------------------------------------


def run_workers(root: Path, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one WORKER per plan, release them together, and collect every result line."""
    procs = [
        subprocess.Popen(
            python(WORKER, root, json.dumps(plan)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for plan in plans
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n", f"worker {proc.pid} failed to start"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list[dict[str, Any]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=DEADLINE * 2)
            assert proc.returncode == 0, f"worker {proc.pid} exited {proc.returncode}"
            results.extend(json.loads(line) for line in out.splitlines())
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(DEADLINE)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def mixed_plans(seed: int, workers: int, steps: int, subnet: str) -> list[dict[str, Any]]:
    """Plans that collide on names, MACs (in either case) and addresses."""
    rng = random.Random(seed)
    macs = [f"52:54:00:00:00:{i:02x}" for i in range(6)]
    plans = []
    for w in range(workers):
        plan_steps = []
        for s in range(steps):
            # A third of the names are shared, so creates race on them too.
            name = f"web-{rng.randrange(12)}" if rng.random() < 0.35 else f"w{w}-{s}"
            mac = rng.choice(macs) if rng.random() < 0.2 else ""
            if mac and rng.random() < 0.5:
                mac = mac.upper()
            op = rng.choice(["create", "create", "allocate_then_create", "explicit"])
            plan_steps.append({"op": op, "name": name, "mac": mac})
        plans.append({"subnet": subnet, "steps": plan_steps, "touch_index": True})
    return plans


EXPECTED_ERRORS = {
    "create": {"SubnetExhaustedError", "VMExistsError", "MACConflictError"},
    "allocate_then_create": {"SubnetExhaustedError", "VMExistsError", "MACConflictError"},
    # free_ips said free, another process took it first: a conflict, never a double.
    "explicit": {"IPConflictError", "VMExistsError", "MACConflictError", "NoFreeAddress"},
}


def check_outcome(store: Store, root: Path, subnet: str, results: list[dict[str, Any]]) -> None:
    raw = [r for r in results if "raw" in r]
    assert raw == [], "only FleetboxError subclasses may escape"
    wrong = [r for r in results if not r["ok"] and r["error"] not in EXPECTED_ERRORS[r["op"]]]
    assert wrong == [], [(r["op"], r["error"], r.get("message")) for r in wrong]
    created = {r["name"]: r for r in results if r["ok"]}
    assert len(created) == sum(r["ok"] for r in results), "one name created twice"

    configs = disk_configs(root)
    # None lost: every successful create has its config, with what create() returned.
    assert set(configs) == set(created)
    for name, r in created.items():
        assert (configs[name]["ip"], configs[name]["mac"]) == (r["ip"], r["mac"])
        if r["op"] == "allocate_then_create":
            assert r["ip"] == r["reserved"]
    # Unique: no address and no MAC (case-insensitively) held twice.
    ips = Counter(c["ip"] for c in configs.values())
    macs = Counter(c["mac"].lower() for c in configs.values())
    assert [v for v, n in ips.items() if n > 1] == []
    assert [v for v, n in macs.items() if n > 1] == []
    assert set(ips) <= set(hosts(subnet))

    # Every worker has exited: whatever it still reserved is released, nothing leaks.
    store.reconcile()
    assert reservation_rows(root) == []
    assert store.free_ips(subnet) == [h for h in hosts(subnet) if h not in ips]
    assert store.check() == []
    assert sorted(vm.name for vm in store.vms()) == sorted(configs)


@pytest.mark.slow
def test_concurrent_creates_in_a_small_subnet(store: Store, root: Path) -> None:
    seed = seeded()
    subnet = "10.9.0.32/27"  # 29 host addresses for 6 x 10 attempts
    store.free_ips(subnet, limit=1)  # the index exists before the race starts
    results = run_workers(root, mixed_plans(seed, 6, 20 if STRESS else 10, subnet))
    check_outcome(store, root, subnet, results)
    errors = Counter(r.get("error") for r in results if not r["ok"])
    print(f"created {sum(r['ok'] for r in results)} of {len(results)}; errors {dict(errors)}")
    # The subnet really ran out: some create was told so, or (when the last attempts all
    # lost on names or MACs instead, seen once in CI) every address is taken.
    held = len(disk_configs(root))
    assert errors["SubnetExhaustedError"] > 0 or held == len(hosts(subnet))
    assert held <= len(hosts(subnet))


@pytest.mark.slow
def test_concurrent_creates_on_a_fresh_root(root: Path) -> None:
    """Six processes whose first call on a root without an index is a create."""
    seed = seeded()
    subnet = "10.9.1.0/28"
    plans = mixed_plans(seed, 6, 3, subnet)
    for plan in plans:
        plan["touch_index"] = False
    Store.open(root).close()  # only the directories; no index.db yet
    assert not (root / "index.db").exists()
    results = run_workers(root, plans)
    with Store.open(root) as store:
        check_outcome(store, root, subnet, results)


@pytest.mark.slow
def test_concurrent_allocations_are_unique(store: Store, root: Path) -> None:
    """Many processes reserving at once: each name gets its own address, none twice."""
    children = []
    try:
        children = [Child(root) for _ in range(6)]
        names = {c.pid: [f"c{i}-{k}" for k in range(5)] for i, c in enumerate(children)}
        for k in range(5):
            for c in children:  # requests in flight in every child at once
                assert c.proc.stdin is not None
                c.proc.stdin.write(
                    json.dumps({"op": "allocate", "name": names[c.pid][k], "subnet": SUBNET}) + "\n"
                )
                c.proc.stdin.flush()
            for c in children:
                assert "ok" in json.loads(c.readline())
        rows = reservation_rows(root)
        assert len(rows) == 30
        assert len({ip for _, ip, _ in rows}) == 30
        assert sorted(ip for _, ip, _ in rows) == sorted(hosts(SUBNET)[:30])
        assert {(n, pid) for n, _, pid in rows} == {
            (n, pid) for pid, ns in names.items() for n in ns
        }
    finally:
        for c in children:
            c.close()
    store.reconcile()
    assert reservation_rows(root) == []


# -- SIGKILL in the middle of creating ----------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_allocation_leaks_nothing(store: Store, root: Path) -> None:
    seed = seeded()
    rng = random.Random(seed)
    subnet = "10.50.0.0/26"  # 61 hosts: small enough to run out, forcing deletes
    rounds, per_round = (30, 4) if STRESS else (5, 4)
    store.free_ips(subnet, limit=1)
    kills = released = 0
    for round_no in range(rounds):
        procs = [
            subprocess.Popen(
                python(KILL_LOOP, root, subnet, f"r{round_no}c{c}", str(rng.randrange(2**32))),
                stdout=subprocess.PIPE,
                text=True,
            )
            for c in range(per_round)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                assert proc.stdout.readline() == "ready\n"
            for proc in procs:
                time.sleep(rng.uniform(0.0, 0.4))
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            for proc in procs:
                out, _ = proc.communicate(timeout=DEADLINE)
                assert proc.returncode == -signal.SIGKILL, f"seed {seed}: {out}"
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(DEADLINE)
                if proc.stdout is not None:
                    proc.stdout.close()
        released += check_after_kills(store, root, subnet, seed)
    members = [p for p in (root / "clusters").glob("*/*") if p.is_dir()]
    configless = [p for p in members if not (p / "config.json").exists()]
    temps = list((root / "clusters").glob("*/*/.config.json.*.tmp"))
    print(
        f"{rounds} rounds, {kills} kills, {released} reservations released, "
        f"{len(members)} members ({len(configless)} configless), {len(temps)} temp files left"
    )


def check_after_kills(store: Store, root: Path, subnet: str, seed: int) -> int:
    where = f"seed {seed}"
    pending = {name for name, _, _ in reservation_rows(root)}
    report = store.reconcile()
    # Every owner is dead: every reservation is released, and reported.
    assert reservation_rows(root) == [], where
    assert pending <= set(report.released), where
    configs = disk_configs(root)  # every config.json parses (json.loads raises otherwise)
    for name in configs:
        assert store.load(name).name == name, where
    ips = Counter(c["ip"] for c in configs.values())
    macs = Counter(c["mac"] for c in configs.values())
    assert [v for v, n in ips.items() if n > 1] == [], where
    assert [v for v, n in macs.items() if n > 1] == [], where
    assert store.free_ips(subnet) == [h for h in hosts(subnet) if h not in ips], where
    assert report.conflicts == [], where
    problems = [p for p in store.check() if p.kind != "stray"]
    assert problems == [], where
    # And the next allocation takes the lowest address no config holds.
    free = [h for h in hosts(subnet) if h not in ips]
    if free:
        assert store.allocate_ip("probe", subnet) == free[0], where
        store.reconcile()
    else:
        with pytest.raises(SubnetExhaustedError):
            store.allocate_ip("probe", subnet)
    store.ensure_dir("probe")
    store.delete("probe")  # releases the probe's reservation
    assert reservation_rows(root) == [], where
    return len(report.released)
