"""SIGKILL at random moments, many times, for every operation that writes.

For each mutating operation (create with allocation, save, delete, reconcile, migrate) a
child process runs it in a loop, announcing each step before it starts ("try") and after it
returns ("ack"), and is SIGKILLed after a random delay. After every kill:

- every config.json on disk parses, and every acknowledged write is on disk byte-exact in
  what it said (the step in flight may have landed or not, never half);
- a fresh Store.open() + reconcile() succeeds, and every answer equals the brute-force
  answer from disk (list, vms, free_ips, members, who_has, check, the report);
- check() is clean: no conflict, nothing unreadable, no drift; no IP or MAC is held twice,
  and no address stays taken by the dead child (its reservations are released).

The delays come from a seeded RNG whose seed is printed; FLEETBOX_SEED=<n> replays a run,
FLEETBOX_STRESS=1 multiplies the kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from stress_helpers import (
    assert_matches_disk,
    conflicts,
    disk_configs,
    no_temp_files,
    parse,
    scaled,
    seed_for,
)

from fleetbox_db import VM, Store
from fleetbox_db.index import schema

SUBNET = "10.60.0.0/22"  # 1021 hosts: the parent trims members before it runs out
KILLS = scaled(8, 60)
DEADLINE = 60.0
MAX_WINDOW = 20.0  # seconds: the most a kill waits after the child is ready

# One loop per operation. "try" goes out before a step, "ack" after it returned; an error
# the library raises on purpose is "err"; anything else is "raw" and ends the child.
CHILD = r"""
import json, os, random, shutil, sys
from fleetbox_db import VM, Fixture, FleetboxError, Store
from fleetbox_db.index import schema

op, root, subnet, prefix, seed = sys.argv[1:6]
rng = random.Random(int(seed))
index = os.path.join(root, "index.db")


def say(kind, **fields):
    sys.stdout.write(kind + " " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def names_in(cluster):
    try:
        return sorted(os.listdir(os.path.join(root, "clusters", cluster)))
    except FileNotFoundError:
        return []


def rewrite_atomically(name):
    # Another tool (not us) rewrites a config by rename: never torn, always a new inode.
    path = os.path.join(root, "clusters", "r", name, "config.json")
    with open(path, "rb") as f:
        data = json.loads(f.read())
    data["cpus"] = rng.randrange(1, 64)
    data["touched_by"] = prefix
    tmp = path + ".other-tool"
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2))
    os.rename(tmp, path)


store = Store.open(root)
store.list()
created = []
say("ready")
i = 0
while True:
    i += 1
    step = {"n": i}
    try:
        if op == "create":
            step["name"] = name = f"{prefix}-{i}"
            step["reserve"] = rng.random() < 0.5
            say("try", **step)
            reserved = store.allocate_ip(name, subnet) if step["reserve"] else None
            fixtures = [Fixture(f"/srv/{i}", "/mnt", "data")] * rng.randrange(3)
            vm = store.create(VM(name, cpus=rng.randrange(1, 9), fixtures=fixtures), subnet=subnet)
            assert reserved in (None, vm.ip), (reserved, vm.ip)
            step.update(ip=vm.ip, mac=vm.mac)
        elif op == "save":
            step["name"] = name = rng.choice(names_in("s"))
            vm = store.load(name)
            vm.cpus = rng.randrange(1, 64)
            vm.extra["serial"] = i
            if rng.random() < 0.3:
                free = store.free_ips(subnet, limit=5)
                vm.ip = rng.choice(free) if free else vm.ip
            vm.fixtures = [Fixture(f"/srv/{i}", "/mnt", "data")] * rng.randrange(3)
            step.update(cpus=vm.cpus, ip=vm.ip)
            say("try", **step)
            store.save(vm)
        elif op == "delete":
            if created and rng.random() < 0.6:
                step["deleted"] = name = created.pop(rng.randrange(len(created)))
                say("try", **step)
                store.delete(name)
            else:
                step["created"] = name = f"{prefix}-{i}"
                say("try", **step)
                vm = store.create(VM(name), subnet=subnet)
                for extra in ("disk.raw", "seed.iso", "serial.log", "efi.nvram"):
                    with open(os.path.join(root, "clusters", prefix, name, extra), "wb") as f:
                        f.write(os.urandom(4096))
                created.append(name)
                step.update(ip=vm.ip, mac=vm.mac)
        elif op == "reconcile":
            say("try", **step)
            for name in rng.sample(names_in("r"), 3):
                rewrite_atomically(name)
            store.reconcile(full=rng.random() < 0.3)
        elif op == "migrate":
            step["how"] = how = rng.choice(["downgraded", "deleted"])
            say("try", **step)
            store.close()
            if how == "downgraded":
                schema.run_alembic(index, "downgrade", schema.KNOWN_REVISIONS[0])
            else:
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(index + suffix)
                    except FileNotFoundError:
                        pass
            store = Store.open(root)
            if how == "downgraded":
                step["revision"] = store.migrate()
            else:
                store.list()  # builds a new index from nothing
        else:
            raise SystemExit(f"unknown op {op}")
        say("ack", **step)
    except FleetboxError as exc:
        say("err", kind=type(exc).__name__, message=str(exc), **step)
    except BaseException as exc:
        say("raw", kind=f"{type(exc).__module__}.{type(exc).__name__}", message=str(exc), **step)
        os._exit(3)
"""


@dataclass
class Run:
    """What one killed child said: its acknowledged steps and the one in flight, if any."""

    acks: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, Any] | None = None


@dataclass
class Figures:
    kills: int = 0
    acks: int = 0
    errors: int = 0
    in_flight: int = 0
    temp_files: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, op: str, seed: int) -> str:
        return (
            f"crash {op}: {self.kills} kills, {self.acks} steps acknowledged, "
            f"{self.errors} typed errors, {self.in_flight} killed mid-step, "
            f"{self.temp_files} temp files left, {time.monotonic() - self.started:.1f} s, "
            f"seed {seed}"
        )


def run_and_kill(root: Path, op: str, prefix: str, seed: int, delay: float) -> Run:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, op, str(root), SUBNET, prefix, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # One reader owns stdout from the first byte: readline() then communicate() would lose
    # whatever readline had buffered past "ready" (communicate reads the raw pipe).
    lines: list[str] = []
    started = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            started.set()
        started.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert started.wait(DEADLINE), "child never started"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(DEADLINE)
        reader.join(DEADLINE)
        err = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    out = "".join(lines)
    assert lines, f"child printed nothing: {err}"
    assert lines[0].startswith("ready"), out + err
    assert proc.returncode == -signal.SIGKILL, f"child ended on its own: {out[-2000:]}{err}"
    run = Run()
    for line in out.splitlines():
        kind, _, payload = line.partition(" ")
        if not payload:
            continue  # the kill cut the line short
        try:
            step = json.loads(payload)
        except json.JSONDecodeError:
            continue  # cut short mid-line
        assert kind != "raw", f"a non-FleetboxError escaped: {step}"
        if kind == "try":
            run.in_flight = step
        elif kind == "ack":
            run.acks.append(step)
            run.in_flight = None
        elif kind == "err":
            run.errors.append(step)
            run.in_flight = None
    return run


# -- what each operation must leave ------------------------------------------------------------


def config_of(root: Path, cluster: str, name: str) -> dict[str, Any] | None:
    path = root / "clusters" / cluster / name / "config.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    parsed: dict[str, Any] = json.loads(data)  # never torn: parses with a strict parser
    return parsed


class Expectations:
    """Per operation: the state acknowledged steps leave, checked after every kill."""

    def __init__(self, root: Path, op: str) -> None:
        self.root, self.op = root, op
        self.created: dict[str, dict[str, Any]] = {}  # create/delete: name -> acked step
        self.saved: dict[str, list[dict[str, Any]]] = {}  # save: name -> allowed states

    def setup(self, store: Store) -> None:
        count = {"save": 6, "reconcile": 30, "migrate": 12}.get(self.op, 0)
        cluster = {"save": "s", "reconcile": "r", "migrate": "m"}.get(self.op, "")
        for i in range(count):
            vm = store.create(VM(f"{cluster}-{i}", cpus=2), subnet=SUBNET)
            if self.op == "save":
                self.saved[vm.name] = [{"cpus": 2, "ip": vm.ip, "serial": None}]

    def absorb(self, run: Run, prefix: str) -> None:
        for step in run.acks:
            if self.op == "create":
                self.created[step["name"]] = step
            elif self.op == "delete" and "created" in step:
                self.created[step["created"]] = step
            elif self.op == "delete":
                del self.created[step["deleted"]]
            elif self.op == "save":
                self.saved[step["name"]] = [step]
        flight = run.in_flight
        if flight is not None and self.op == "save":
            self.saved[flight["name"]].append(flight)  # landed, or not: both are fine

    def check(self, run: Run, prefix: str) -> None:
        flight = run.in_flight or {}
        relaxed = {flight.get(k) for k in ("name", "created", "deleted")} - {None}
        if self.op in ("create", "delete"):
            for name in relaxed:  # landed, half done (rmtree cut short) or not: no claim
                self.created.pop(name, None)
            for name, step in self.created.items():
                cluster = name.rsplit("-", 1)[0]
                config = config_of(self.root, cluster, name)
                assert config is not None, f"acknowledged {name} lost"
                assert (config["ip"], config["mac"]) == (step["ip"], step["mac"]), name
            if self.op == "delete":
                for step in run.acks:
                    if "deleted" in step:
                        gone = self.root / "clusters" / prefix / step["deleted"]
                        assert not gone.exists(), f"deleted {gone} came back"
        if self.op == "save":
            for name, allowed in self.saved.items():
                config = config_of(self.root, "s", name)
                assert config is not None, f"{name} lost its config"
                got = {"cpus": config["cpus"], "ip": config["ip"], "serial": config.get("serial")}
                states = [
                    {"cpus": s["cpus"], "ip": s["ip"], "serial": s.get("serial", s.get("n"))}
                    for s in allowed
                ]
                assert got in states, f"{name}: {got} is neither acknowledged nor in flight"
                self.saved[name] = [allowed[states.index(got)]]

    def trim(self, store: Store) -> None:
        """Keep the tree small: delete old members through the library once it grows."""
        if self.op not in ("create", "delete"):
            return
        members = list(disk_configs(self.root))
        if len(members) < 150:
            return
        for _, name in members[: len(members) // 2]:
            store.delete(name)
            self.created.pop(name, None)


def verify(root: Path, figures: Figures) -> None:
    """After a kill: every config parses, the library agrees with disk, nothing is held twice."""
    configs = disk_configs(root)
    for key, data in configs.items():
        if data is not None:
            json.loads(data)
            assert parse(data) is not None, key
    figures.temp_files = len(no_temp_files(root))
    with Store.open(root) as store:
        store.reconcile()
        configs = assert_matches_disk(store, root, [SUBNET, "10.60.0.0/28"])
        claims = [(k, vm) for k, d in configs.items() if (vm := parse(d)) is not None]
        assert conflicts(claims) == set(), "an IP or MAC is held twice"
        assert store.check() == []
        assert store.migrate() == schema.HEAD


OPS = ["create", "save", "delete", "reconcile", "migrate"]


@pytest.mark.slow
@pytest.mark.parametrize("op", [pytest.param(op, id=op) for op in OPS])
def test_sigkill_loop(tmp_path: Path, op: str) -> None:
    seed = seed_for(f"crash-{op}")
    rng = random.Random(seed)
    root = tmp_path / "fleetbox"
    expect = Expectations(root, op)
    with Store.open(root) as store:
        expect.setup(store)
    figures = Figures()
    # The migrate loop restarts Alembic each step: give it longer to get into one. A run
    # that acknowledged no step doubles the window (a loaded machine runs steps slower), so
    # the loop always sees steps complete as well as die.
    longest = 1.5 if op == "migrate" else 0.5
    for k in range(KILLS):
        prefix = f"k{k}"
        run = run_and_kill(root, op, prefix, rng.randrange(2**32), rng.uniform(0.0, longest))
        if not run.acks:
            longest = min(longest * 2, MAX_WINDOW)
        figures.kills += 1
        figures.acks += len(run.acks)
        figures.errors += len(run.errors)
        figures.in_flight += run.in_flight is not None
        assert run.errors == [], run.errors
        expect.absorb(run, prefix)
        expect.check(run, prefix)
        verify(root, figures)
        with Store.open(root) as store:
            expect.trim(store)
    print(figures.line(op, seed), file=sys.stderr)
    assert figures.acks > 0
    # The operator's repair after the crashes: a full reconcile, a minute on, sweeps every
    # temp file the kills left and changes nothing else.
    left = no_temp_files(root)
    before = disk_configs(root)
    with Store.open(root, clock=lambda: time.time_ns() + 120 * 10**9) as store:
        assert sorted(store.reconcile(full=True).swept) == left
    assert no_temp_files(root) == []
    assert disk_configs(root) == before
