"""Readers make progress beside writers that never stop (issue 12, the stress test).

One process allocates addresses in a loop, one creates and deletes members in a loop, one
re-saves 8 configs in place as the Go tool does (open with O_TRUNC, two writes), and reader
processes cycle list, vms, who_has and free_ips. Every reader must keep answering (at
least MIN_CALLS calls, none slower than MAX_CALL_S), every answer must include the members
that existed throughout, and no address may be handed out twice. Bounded to SECONDS by
default; FLEETBOX_STRESS=1 runs it longer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from stress_helpers import scaled

from fleetbox_db import VM, Store

SECONDS = scaled(12, 60)
READERS = 3
MIN_CALLS = 20
MAX_CALL_S = 5.0
STEADY = [f"steady-{i}" for i in range(40)]  # exist throughout
SUBNET = "10.90.0.0/22"

READER = r"""
import json, sys, time
from fleetbox_db import Store
root, deadline, steady = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
rewritten = set(json.loads(sys.argv[4]))  # a torn read of these is unreadable: not in vms()
steady_ips = {name: ip for name, ip in steady}
calls, worst, missing = 0, 0.0, []
ops = ["list", "vms", "who_has", "free_ips"]
with Store.open(root) as store:
    while time.monotonic() < deadline:
        op = ops[calls % len(ops)]
        started = time.monotonic()
        if op == "list":
            seen = set(store.list())
        elif op == "vms":
            seen = {vm.name for vm in store.vms()} | rewritten
        elif op == "who_has":
            name, ip = steady[calls % len(steady)]
            seen = set(steady_ips) if store.who_has(ip) == name else set()
        else:
            store.free_ips("10.90.0.0/22", limit=5)
            seen = set(steady_ips)
        worst = max(worst, time.monotonic() - started)
        calls += 1
        lost = sorted(set(steady_ips) - seen)
        if lost:
            missing.append([op, lost[:3]])
print(json.dumps({"calls": calls, "worst": worst, "missing": missing[:5]}), flush=True)
"""

ALLOCATOR = r"""
import json, sys, time
from fleetbox_db import Store
root, deadline, subnet = sys.argv[1], float(sys.argv[2]), sys.argv[3]
got, i = [], 0
with Store.open(root) as store:
    while time.monotonic() < deadline and i < 900:
        began = time.monotonic()
        got.append([began, store.allocate_ip(f"alloc-{i}", subnet), time.monotonic()])
        i += 1
# Alive (so are its reservations) until every other writer has stopped.
time.sleep(max(0.0, deadline + 1 - time.monotonic()))
print(json.dumps({"calls": i, "ips": got}), flush=True)
"""

CREATOR = r"""
import json, sys, time
from fleetbox_db import VM, Store
root, deadline, subnet = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ips, i = [], 0
with Store.open(root) as store:
    while time.monotonic() < deadline:
        began = time.monotonic()
        vm = store.create(VM(f"churn-{i}"), subnet=subnet)
        created = time.monotonic()  # its config holds vm.ip from here...
        time.sleep(0.02)  # (long enough for an allocation to fit in)
        deleting = time.monotonic()  # ...to here at least: the delete frees it before it returns
        store.delete(vm.name)
        ips.append([began, created, vm.ip, deleting])
        i += 1
print(json.dumps({"calls": i, "ips": ips}), flush=True)
"""

GO_WRITER = r"""
import json, os, sys, time
root, deadline, names = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
writes = 0
while time.monotonic() < deadline:
    name = names[writes % len(names)]
    path = os.path.join(root, "clusters", "steady", name, "config.json")
    with open(path, "rb") as f:
        config = json.loads(f.read())
    config["cpus"] = 1 + writes % 8
    data = json.dumps(config, indent=2).encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data[: len(data) // 2])
        os.write(fd, data[len(data) // 2 :])
    finally:
        os.close(fd)
    writes += 1
print(json.dumps({"calls": writes}), flush=True)
"""


def start(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=SECONDS + 120)
    assert proc.returncode == 0, err[-3000:]
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


@pytest.mark.slow
def test_readers_progress_beside_writers_that_never_stop(root: Path) -> None:
    with Store.open(root) as store:
        steady = [(n, store.create(VM(n), subnet="10.91.0.0/24").ip) for n in STEADY]
        store.list()
    deadline = time.monotonic() + SECONDS  # CLOCK_MONOTONIC: one clock for every process
    writers = [
        start(ALLOCATOR, root, deadline, SUBNET),
        start(CREATOR, root, deadline, SUBNET),
        start(GO_WRITER, root, deadline, json.dumps(STEADY[:8])),
    ]
    args = (root, deadline, json.dumps(steady), json.dumps(STEADY[:8]))
    readers = [start(READER, *args) for _ in range(READERS)]
    reads = [result(p) for p in readers]
    allocated, churned, go = (result(p) for p in writers)
    calls = [r["calls"] for r in reads]
    worst = max(r["worst"] for r in reads)
    print(
        f"contention: reader calls {calls}, worst call {worst:.3f} s; writer calls"
        f" {allocated['calls']} {churned['calls']} {go['calls']}",
        file=sys.stderr,
    )
    for summary in reads:
        assert summary["missing"] == []
        assert summary["calls"] >= MIN_CALLS, summary
        assert summary["worst"] <= MAX_CALL_S, summary
    assert go["calls"] > 0
    assert churned["calls"] > 0
    assert allocated["calls"] > 0
    # No address handed out twice. The allocator lives throughout, so its reservations do:
    # they are unique, no member created after one was made got its address, and none
    # was made while a created member held it (CLOCK_MONOTONIC is one clock for all).
    reserved = {ip: (began, done) for began, ip, done in allocated["ips"]}
    assert len(reserved) == len(allocated["ips"])
    for began, created, ip, deleting in churned["ips"]:
        if ip in reserved:
            alloc_began, alloc_done = reserved[ip]
            assert not alloc_done < began, f"{ip} reserved before a create took it"
            assert not (created < alloc_began and alloc_done < deleting), f"{ip} reserved twice"
    with Store.open(root) as store:
        assert store.reconcile().conflicts == []
