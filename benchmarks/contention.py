"""Readers beside writers that never stop (issue 12): latency, progress and lock times.

    python -m benchmarks.contention [--n N]... [--seconds S] [--rounds R] [--json OUT]

On a copy of the cached synthetic store of N members (benchmarks/synth.py), 4 reader
processes cycle list, vms, who_has, free_ips for the whole run, beside 6 neighbours of two
kinds that take turns every S/R seconds (default R=3), R turns each, the other kind idle:

- baseline: 3 processes that only burn CPU (on 2 cores the readers get the same share of
  CPU as beside real writers, so only waiting differs);
- contention: 3 writers: an allocate_ip loop, a create+delete loop, and a Go-style
  writer re-saving 8 configs in place (open with O_TRUNC, two writes). They live through
  the run, so the allocator's leases pile up over its S seconds as in one loop.

A reader call counts for the window it started and ended in; calls while the neighbours
change over count for none, and what a window wrote is synced and checkpointed out of the
WAL before the next begins. Alternating windows under one set of readers lets a shared
machine's drift (other tenants, the host) fall on both alike, where a baseline phase and a
contention phase a minute apart differed by up to a third in calls done. Then each writer
runs alone for S seconds (its calls alone).

Prints per operation p50 / p99 / max and calls, the write lock's wait and hold times, and
the targets as ratios measured in this one run: reader p99 <= 1.5x its baseline p99, no
reader call over 5x that p99, writer p99 <= 1 s, and each writer completing at least 25%
of its calls alone divided by the number of writers. Never a timed assertion in a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Final

from benchmarks import synth
from fleetbox_db import VM, Store
from fleetbox_db.index import reconcile as _reconcile

READERS: Final = 4
WRITERS: Final = ("allocate", "create+delete", "go-write")
GO_CONFIGS: Final = 8
READ_OPS: Final = ("list", "vms", "who_has", "free_ips")
BETWEEN: Final = 0  # the shared window number while neighbours change over
STOP: Final = -1  # ... when the readers are to report
#: Readers settle (open the store, a first call of each kind) before the first window.
WARM_UP_S: Final = 1.0
IDLE_S: Final = 0.01  # how often an idle neighbour looks at the window number


def _reader(root: str, n: int, window: Synchronized[int], out: Queue[Any]) -> None:
    """Cycle the read operations until *window* is STOP; a call counts for the window
    (its number, > 0) it started and ended in, none while it is BETWEEN."""
    times: dict[int, dict[str, list[float]]] = {}
    subnet = synth.subnet_for(n)
    with Store.open(root) as store:
        i = 0
        while (before := window.value) != STOP:
            op = READ_OPS[i % len(READ_OPS)]
            started = time.perf_counter()
            if op == "list":
                store.list()
            elif op == "vms":
                store.vms()
            elif op == "who_has":
                store.who_has(synth.ip_of(i * 7919 % n))
            else:
                store.free_ips(subnet, limit=10)
            took = time.perf_counter() - started
            if before > BETWEEN and window.value == before:
                times.setdefault(before, {o: [] for o in READ_OPS})[op].append(took)
            i += 1
    out.put(("reader", times, []))


class _Shift:
    """When a neighbour works: while the shared window number is one of its kind's (odd:
    the burners', even: the writers'). Between its windows it idles, so an allocator keeps
    its leases across them as one 30 s loop would; *busy* counts the neighbours at work."""

    def __init__(self, window: Synchronized[int], busy: Synchronized[int], writer: bool) -> None:
        self.window, self.busy, self.parity = window, busy, 0 if writer else 1
        self.current = BETWEEN

    def next(self) -> bool:
        """Wait for this kind's next window; False at STOP."""
        while (number := self.window.value) != STOP:
            if number > BETWEEN and number % 2 == self.parity:
                self.current = number
                with self.busy.get_lock():
                    self.busy.value += 1
                return True
            time.sleep(IDLE_S)
        return False

    def on(self) -> bool:
        """Still in the window next() found; once False, call next()."""
        if self.window.value == self.current:
            return True
        with self.busy.get_lock():
            self.busy.value -= 1
        return False


class _Once:
    """One window of *seconds* from the first next() (a writer alone)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.deadline = seconds, 0.0

    def next(self) -> bool:
        if self.deadline:
            return False
        self.deadline = time.monotonic() + self.seconds
        return True

    def on(self) -> bool:
        return time.monotonic() < self.deadline


def _writer(kind: str, root: str, n: int, shift: _Shift | _Once, out: Queue[Any]) -> None:
    latencies: list[float] = []
    with Store.open(root) as store:
        i = 0
        while shift.next():
            while shift.on():
                started = time.perf_counter()
                if kind == "allocate":
                    store.allocate_ip(f"alloc-{os.getpid()}-{i}", "10.250.0.0/16")
                elif kind == "create+delete":
                    vm = store.create(VM(f"churn-{os.getpid()}-{i}"), subnet="10.251.0.0/16")
                    store.delete(vm.name)
                else:
                    _go_write(synth.config_path(Path(root), i % GO_CONFIGS))
                latencies.append(time.perf_counter() - started)
                i += 1
        # The lock times this process saw (the index file keeps the latest 4096).
        locks = list(store._mirror._file.lock_times)
    out.put((kind, {kind: latencies}, locks))


def _go_write(path: str) -> None:
    """Go's os.WriteFile of the same config: truncate in place, then two writes."""
    with open(path, "rb") as f:
        data = f.read()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data[: len(data) // 2])
        os.write(fd, data[len(data) // 2 :])
    finally:
        os.close(fd)


def _burner(shift: _Shift, out: Queue[Any]) -> None:
    while shift.next():
        while shift.on():
            sum(range(10_000))
    out.put(("burner", {}, []))


def _started(targets: list[tuple[Any, tuple[Any, ...]]], out: Queue[Any]) -> list[Any]:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=f, args=(*args, out)) for f, args in targets]
    for p in procs:
        p.start()
    return procs


def _joined(procs: list[Any]) -> None:
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a benchmark process failed (exit {p.exitcode})")


def _alone(kind: str, root: str, n: int, seconds: float) -> int:
    """Calls one writer completes by itself in *seconds*."""
    out: Queue[Any] = multiprocessing.get_context("fork").Queue()
    procs = _started([(_writer, (kind, root, n, _Once(seconds)))], out)
    report = out.get(timeout=seconds + 600)
    _joined(procs)
    return len(report[1][kind])


def _settled(root: str) -> None:
    """What one window wrote is on disk and out of the WAL before the next begins: else
    the burners' windows would read through the writers' frames and meet their writeback."""
    os.sync()
    with contextlib.closing(sqlite3.connect(Path(root) / "index.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _interleaved(root: str, n: int, seconds: float, rounds: int) -> tuple[list[Any], list[Any]]:
    """(reader reports, neighbour reports) of *rounds* baseline and contention windows of
    seconds/rounds each, alternating, beside one set of readers. A reader report's times
    are by window number: odd numbers are baseline windows, even ones contention."""
    ctx = multiprocessing.get_context("fork")
    window: Synchronized[int] = ctx.Value("i", BETWEEN, lock=False)
    busy: Synchronized[int] = ctx.Value("i", 0)
    out: Queue[Any] = ctx.Queue()
    readers = _started([(_reader, (root, n, window)) for _ in range(READERS)], out)
    neighbours = _started(
        [(_burner, (_Shift(window, busy, writer=False),)) for _ in WRITERS]
        + [(_writer, (k, root, n, _Shift(window, busy, writer=True))) for k in WRITERS],
        out,
    )
    try:
        time.sleep(WARM_UP_S)
        for number in range(1, 2 * rounds + 1):
            _settled(root)
            window.value = number
            time.sleep(seconds / rounds)
            window.value = BETWEEN
            while busy.value:  # each finishes the call it is in
                time.sleep(IDLE_S)
    finally:
        window.value = STOP
    reports = [out.get(timeout=600) for _ in readers + neighbours]
    _joined(readers + neighbours)
    return [r for r in reports if r[0] == "reader"], [r for r in reports if r[0] != "reader"]


def _stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"calls": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"calls": len(ordered), "p50": statistics.median(ordered), "p99": p99,
            "max": ordered[-1]}  # fmt: skip


def _merge(reports: list[Any], role: str) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for who, times, _ in reports:
        if who == role or (role == "writer" and who in WRITERS):
            for op, values in times.items():
                merged.setdefault(op, []).extend(values)
    return merged


def _windows(reports: list[Any], contention: bool) -> dict[str, list[float]]:
    """The readers' samples of every baseline (or contention) window, by operation."""
    merged: dict[str, list[float]] = {op: [] for op in READ_OPS}
    for _, by_window, _ in reports:
        for number, times in by_window.items():
            if (number % 2 == 0) == contention:
                for op, values in times.items():
                    merged[op].extend(values)
    return merged


def run(n: int, seconds: float, cache: Path, rounds: int = 3) -> dict[str, Any]:
    cached = synth.cached_store(cache, n)
    scratch = Path(tempfile.mkdtemp(prefix="fleetbox-contention-"))
    try:
        root = str(synth.copy_store(cached, scratch / "root"))
        with Store.open(root) as store:
            store.list()  # the index exists and is current before any phase
            # The copy's configs are new: until one tick has passed and a listing has
            # verified them, every call re-reads them all, which would inflate the baseline.
            time.sleep(_reconcile.DEFAULT_GRANULARITY_NS / 1e9 + 0.5)
            store.list()
        readers, neighbours = _interleaved(root, n, seconds, rounds)
        solo = {k: _alone(k, root, n, seconds) for k in WRITERS}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = {op: _stats(v) for op, v in _windows(readers, contention=False).items()}
    read = {op: _stats(v) for op, v in _windows(readers, contention=True).items()}
    write = {op: _stats(v) for op, v in _merge(neighbours, "writer").items()}
    locks = {k: [t for who, _, held in neighbours if who == k for t in held] for k in WRITERS}
    return {
        "n": n,
        "seconds": seconds,
        "rounds": rounds,
        "baseline": base,
        "contention": read,
        "writers": write,
        "alone_calls": solo,
        "lock_wait": {k: _stats([w for w, _ in v]) for k, v in locks.items()},
        "lock_hold": {k: _stats([h for _, h in v]) for k, v in locks.items()},
    }


def _ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(what, measured against target, met) for every target of issue 12."""
    found = []
    for op in READ_OPS:
        base, seen = result["baseline"][op], result["contention"][op]
        ratio, worst = seen["p99"] / base["p99"], seen["max"] / base["p99"]
        found.append((f"{op} p99", f"{ratio:.2f}x baseline p99 (<= 1.5x)", ratio <= 1.5))
        found.append((f"{op} max", f"{worst:.2f}x baseline p99 (<= 5x)", worst <= 5))
    for kind in WRITERS:
        seen = result["writers"][kind]
        found.append((f"{kind} p99", f"{_ms(seen['p99'])} ms (<= 1000 ms)", seen["p99"] <= 1))
        share = seen["calls"] / (result["alone_calls"][kind] / len(WRITERS))
        found.append((f"{kind} calls", f"{share:.0%} of alone/{len(WRITERS)} (>= 25%)",
                      share >= 0.25))  # fmt: skip
    return found


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"N={result['n']:,} members, {result['seconds']:g} s per phase"
        f" in {result['rounds']} alternating windows each"
    ]
    header = f"{'operation':<28}{'calls':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
    lines.append(header)
    for title, table in (("baseline", "baseline"), ("contended", "contention"),
                         ("writer", "writers"), ("lock wait", "lock_wait"),
                         ("lock hold", "lock_hold")):  # fmt: skip
        for op, s in result[table].items():
            lines.append(
                f"{title + ' ' + op:<28}{s['calls']:>8}{_ms(s['p50']):>10}"
                f"{_ms(s['p99']):>10}{_ms(s['max']):>10}"
            )
    lines.append("writers alone (calls): " + ", ".join(
        f"{k} {v}" for k, v in result["alone_calls"].items()))  # fmt: skip
    for what, measured, met in verdicts(result):
        lines.append(f"  {'pass' if met else 'MISS'}  {what}: {measured}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="members (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument(
        "--rounds", type=int, default=3, help="baseline and contention windows, each"
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--cache", type=Path, default=Path(__file__).parent / ".cache")
    args = parser.parse_args(argv)
    results = []
    for n in args.n or [1000, 10_000]:
        result = run(n, args.seconds, args.cache, args.rounds)
        results.append(result)
        print(format_result(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
