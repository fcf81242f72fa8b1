"""Readers beside writers that never stop (issue 12): latency, progress and lock times.

    python -m benchmarks.contention [--n N]... [--seconds S] [--rounds R] [--json OUT]

On a copy of the cached synthetic store of N members (benchmarks/synth.py), 4 reader
processes cycle list, vms, who_has, free_ips for the whole run, while their neighbours
change every S/R seconds (default R=3), R times each, alternating:

- baseline: 3 processes that only burn CPU (on 2 cores the readers get the same share of
  CPU as beside real writers, so only waiting differs);
- contention: 3 writers: an allocate_ip loop, a create+delete loop, and a Go-style
  writer re-saving 8 configs in place (open with O_TRUNC, two writes).

A reader call counts for the window it started and ended in; calls while neighbours
change over count for none. Alternating windows under one set of readers lets a shared
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
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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


def _writer(kind: str, root: str, n: int, deadline: float, out: Queue[Any]) -> None:
    latencies: list[float] = []
    with Store.open(root) as store:
        i = 0
        while time.monotonic() < deadline:
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


def _burner(deadline: float, out: Queue[Any]) -> None:
    while time.monotonic() < deadline:
        sum(range(10_000))
    out.put(("burner", {}, []))


def _phase(
    targets: list[tuple[Any, tuple[Any, ...]]],
    seconds: float,
    out: Queue[Any] | None = None,
    started: Callable[[], None] = lambda: None,
) -> list[Any]:
    """Run every (function, args) in its own process for *seconds*; their reports.
    *started* is called once all are running; *out*: a queue of the caller's."""
    ctx = multiprocessing.get_context("fork")
    out = out if out is not None else ctx.Queue()
    deadline = time.monotonic() + seconds
    procs = [ctx.Process(target=f, args=(*args, deadline, out)) for f, args in targets]
    for p in procs:
        p.start()
    started()
    reports = [out.get(timeout=seconds + 600) for _ in procs]
    _joined(procs)
    return reports


def _joined(procs: list[Any]) -> None:
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a benchmark process failed (exit {p.exitcode})")


def _interleaved(root: str, n: int, seconds: float, rounds: int) -> tuple[list[Any], list[Any]]:
    """(reader reports, neighbour reports) of *rounds* baseline and contention windows of
    seconds/rounds each, alternating, beside one set of readers. A reader report's times
    are by window number: odd numbers are baseline windows, even ones contention."""
    ctx = multiprocessing.get_context("fork")
    window: Synchronized[int] = ctx.Value("i", BETWEEN, lock=False)
    out: Queue[Any] = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(root, n, window, out)) for _ in range(READERS)]
    for p in readers:
        p.start()
    neighbours: list[Any] = []
    try:
        time.sleep(WARM_UP_S)
        for number in range(1, 2 * rounds + 1):
            targets: list[tuple[Any, tuple[Any, ...]]]
            if number % 2:
                targets = [(_burner, ()) for _ in WRITERS]
            else:
                targets = [(_writer, (k, root, n)) for k in WRITERS]

            def begin(number: int = number) -> None:
                window.value = number

            neighbours += _phase(targets, seconds / rounds, started=begin)
            window.value = BETWEEN
    finally:
        window.value = STOP
    reports = [out.get(timeout=600) for _ in readers]
    _joined(readers)
    return reports, neighbours


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
        alone = {k: _phase([(_writer, (k, root, n))], seconds)[0] for k in WRITERS}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = {op: _stats(v) for op, v in _windows(readers, contention=False).items()}
    read = {op: _stats(v) for op, v in _windows(readers, contention=True).items()}
    write = {op: _stats(v) for op, v in _merge(neighbours, "writer").items()}
    solo = {k: len(r[1][k]) for k, r in alone.items()}
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
