"""Benchmark the Store against the disk floor (issue 7).

    python -m benchmarks.store [--n N] [--rounds R] [--json OUT] [--rss] [--no-cli]
                               [--profile CASE]... [--cache DIR] [--scratch DIR] [--keep]

Builds (once; cached in benchmarks/.cache/) a store of N members in the Go tool's format,
copies it to a scratch directory, and times every case once per round, round-robin, so that
drift on the machine hits all cases alike. Prints medians and their ratios to ``walk`` (the
floor every reconciling call pays) as one table; ``--json`` writes the same figures.

Each round starts from a settled store: no config changed within the index's racy-timestamp
window, and the warm Store has already listed it and answered vms() once (``vms`` measures
that Store; ``vms_first`` a Store just opened and listed, untimed, so its first vms()).
The two cases that change the store run last in the round: ``incremental`` rewrites a
fresh 1% of configs in place (as Go's os.WriteFile does) and times one list();
``cold_rebuild`` deletes index.db (and -wal/-shm) and times Store.open() plus one list();
``cold_process`` does the same in a new process, as a user meets it: the time from before
``import fleetbox_db`` to the end of the first list(), measured inside that process.
The warm Store's last vms() result stays referenced, so every case runs with a heap that
holds one (the collector's cost grows with the heap). ``walk`` is the lean floor; the old
one (``walk_old``) is still printed.
Each sample records wall time (what the targets judge) and CPU time of the process and its
children (steadier on a shared machine), from the call to the release of what it returned
(as timeit times a statement), with the garbage collector left on (a collection runs before
each sample) and a warm page cache.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import fleetbox_db
from benchmarks import floor, report, synth, versus_go
from fleetbox_db import Store
from fleetbox_db.index import reconcile as _reconcile

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_CACHE: Final = Path(__file__).resolve().parent / ".cache"
CLI_MEMBERS: Final = 100
PROCESS_CASES: Final = ("python_startup", "import_sqlalchemy", "cli_ls_json")
#: How long after a write the index distrusts a file's mtime; the settle step waits it out.
RACY_NS: Final = int(getattr(_reconcile, "DEFAULT_GRANULARITY_NS", 2_000_000_000))


def _nothing() -> None:
    return None


@dataclass
class Case:
    name: str
    run: Callable[[], object]
    prepare: Callable[[], None] = _nothing  # untimed, just before each sample
    mutates: bool = False


@dataclass(frozen=True)
class SelfTimed:
    """A sample a child process measured itself (wall, CPU ms): what _timed reports for it."""

    wall_ms: float
    cpu_ms: float


_COLD_PROCESS: Final = """\
import json, sys, time
wall, cpu = time.perf_counter(), time.process_time()
from fleetbox_db import Store
store = Store.open(sys.argv[1])
names = store.list()
print(json.dumps([(time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3]))
store.close()
"""


@dataclass
class Bench:
    """The in-process cases over one scratch copy of the store."""

    root: Path
    n: int
    subnet: str
    store: Store = field(init=False)
    rewrites: int = 0
    last_write_ns: int = 0
    fresh: Store | None = None
    held: list[object] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clusters = str(self.root / "clusters")
        probe = self.n // 2
        self.probe_ip = synth.ip_of(probe)
        self.probe_name = synth.member_name(probe)
        self.probe_cluster = synth.cluster_of(probe)
        self.store = Store.open(self.root)

    def cases(self) -> list[Case]:
        s = self
        return [
            Case("walk", lambda: floor.walk(s.clusters)),
            Case("walk_old", lambda: floor.walk_old(s.clusters)),
            Case("parse", lambda: floor.parse(s.clusters)),
            Case("list_warm", lambda: s.store.list()),
            Case("list_fresh", self.list_fresh),
            Case("vms", lambda: s.store.vms()),
            Case("vms_first", lambda: s.fresh_store().vms(), self.open_and_list),
            Case("members", lambda: s.store.members(s.probe_cluster)),
            Case("who_has", lambda: s.store.who_has(s.probe_ip)),
            Case("free_ips", lambda: s.store.free_ips(s.subnet, limit=synth.PROBE_LIMIT)),
            Case(
                "free_ips_naive",
                lambda: floor.naive_free_ips(s.clusters, s.subnet, synth.PROBE_LIMIT),
            ),
            Case("incremental", lambda: s.store.list(), self.rewrite_next, mutates=True),
            Case("cold_rebuild", self.cold_list, self.drop_index, mutates=True),
            Case("cold_process", self.cold_process, self.drop_index, mutates=True),
        ]

    def settle(self) -> None:
        """Wait out the racy window of the last rewrite, then list twice and ask vms() (untimed)."""
        wait_ns = self.last_write_ns + RACY_NS + 100_000_000 - time.time_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
        self.store.list()
        self.store.list()
        # The vms case measures a Store that has answered vms() before; the result stays
        # referenced, as a caller's would, so every case runs with it on the heap.
        self.held = list(self.store.vms())

    def open_and_list(self) -> None:
        """A Store as a new process has it once list() answered: no vms() asked yet."""
        if self.fresh is not None:
            self.fresh.close()
        self.fresh = Store.open(self.root)
        self.fresh.list()

    def fresh_store(self) -> Store:
        assert self.fresh is not None
        return self.fresh

    def list_fresh(self) -> list[str]:
        with Store.open(self.root) as store:
            return store.list()

    def rewrite_next(self) -> None:
        """Rewrite 1% of the configs in place, a different 1% each time."""
        step = min(100, self.n)
        for i in range(self.rewrites % step, self.n, step):
            synth.rewrite_in_place(synth.config_path(self.root, i))
        self.rewrites += 1
        self.last_write_ns = time.time_ns()

    def drop_index(self) -> None:
        self.store.close()
        if self.fresh is not None:
            self.fresh.close()
            self.fresh = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.root}/index.db{suffix}").unlink(missing_ok=True)

    def cold_list(self) -> list[str]:
        self.store = Store.open(self.root)
        return self.store.list()

    def cold_process(self) -> SelfTimed:
        """A new process's first list() on a store without index.db, imports included."""
        argv = [sys.executable, "-c", _COLD_PROCESS, str(self.root)]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, env=_env())
        wall, cpu = json.loads(done.stdout)
        self.store = Store.open(self.root)
        return SelfTimed(wall, cpu)

    def checks(self) -> list[dict[str, Any]]:
        """Untimed: every case answers what the synthetic store holds."""
        order = sorted(range(self.n), key=lambda i: (synth.cluster_of(i), synth.member_name(i)))
        expected = [synth.member_name(i) for i in order]
        members = [synth.member_name(i) for i in order if synth.cluster_of(i) == self.probe_cluster]
        naive = floor.naive_free_ips(self.clusters, self.subnet, synth.PROBE_LIMIT)
        results = [
            ("walk sees N members", len(floor.walk(self.clusters)) == self.n, ""),
            (
                "both floors list the same",
                [(c, m) for c, m, _ in floor.walk(self.clusters)]
                == [tuple(p.rsplit("/", 2)[1:]) for p, _ in floor.walk_old(self.clusters)],
                "",
            ),
            ("parse reads N configs", len(floor.parse(self.clusters)) == self.n, ""),
            ("list() is Go's List() order", self.store.list() == expected, ""),
            ("vms() has N records", len(self.store.vms()) == self.n, ""),
            ("members(cluster)", self.store.members(self.probe_cluster) == members, ""),
            ("who_has(ip)", self.store.who_has(self.probe_ip) == self.probe_name, ""),
            (
                "free_ips equals the naive scan",
                self.store.free_ips(self.subnet, limit=synth.PROBE_LIMIT) == naive,
                f"naive: {naive[:3]}...",
            ),
        ]
        return [{"check": c, "ok": ok, "detail": "" if ok else d} for c, ok, d in results]

    def close(self) -> None:
        self.store.close()
        if self.fresh is not None:
            self.fresh.close()


class CliBench:
    """Whole-process cases: the CLI on a small store against a bare interpreter."""

    def __init__(self, root: Path) -> None:
        self.ls_argv = [sys.executable, "-m", "fleetbox_db", "--root", str(root), "ls", "--json"]

    def unavailable(self) -> str | None:
        """Why the CLI case cannot run, or None; primes the index (and the .pyc files)."""
        versus_go.compile_package()
        if importlib.util.find_spec("fleetbox_db.__main__") is None:
            return "no fleetbox_db.__main__ yet (the CLI is not written); rerun later"
        done = subprocess.run(self.ls_argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"`fleetbox-db ls --json` failed (exit {done.returncode}): {last}"
        try:
            records = json.loads(done.stdout)
        except ValueError:
            return "`fleetbox-db ls --json` did not print JSON"
        if len(records) != CLI_MEMBERS:
            return f"`fleetbox-db ls --json` listed {len(records)} members, not {CLI_MEMBERS}"
        return None

    def cases(self, with_cli: bool) -> list[Case]:
        cases = [
            Case("python_startup", lambda: _run([sys.executable, "-c", "pass"])),
            Case("import_sqlalchemy", lambda: _run([sys.executable, "-c", "import sqlalchemy"])),
        ]
        if with_cli:
            cases.append(Case("cli_ls_json", lambda: _run(self.ls_argv)))
        return cases


def _run(argv: list[str]) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (the subprocess cases)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one call and the release of what it returned, as timeit times a
    statement; CPU time ignores other processes' load on the machine.

    Releasing the answer is part of every call: a call's own temporaries die inside it,
    so timing up to the return only would leave out the release of whatever a case hands
    back, and that differs by case (the floor's 10,000 stat results cost ~2.8 ms at 10,000
    members, list()'s names ~0.1 ms).
    """
    gc.collect()
    cpu = _cpu_seconds()
    start = time.perf_counter_ns()
    result = fn()
    if isinstance(result, SelfTimed):
        return result.wall_ms, result.cpu_ms
    del result
    wall = (time.perf_counter_ns() - start) / 1e6
    return wall, (_cpu_seconds() - cpu) * 1e3


Samples = dict[str, list[tuple[float, float]]]


def run_rounds(cases: list[Case], rounds: int, settle: Callable[[], None]) -> Samples:
    """One sample per case per round; steady cases rotate their order, mutating ones go last."""
    samples: Samples = {case.name: [] for case in cases}
    steady = [case for case in cases if not case.mutates]
    mutating = [case for case in cases if case.mutates]
    for r in range(rounds):
        settle()
        k = r % len(steady)
        for case in steady[k:] + steady[:k] + mutating:
            case.prepare()
            samples[case.name].append(_timed(case.run))
        _log(f"round {r + 1}/{rounds} done")
    return samples


def measure_rss(bench: Bench) -> dict[str, Any]:
    """Peak RSS of a fresh process that rebuilds the index and answers queries."""
    bench.drop_index()
    argv = [sys.executable, "-m", "benchmarks.rss", str(bench.root), bench.subnet]
    argv += [bench.probe_ip, bench.probe_cluster]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO, env=_env())
    rss: dict[str, Any] = json.loads(done.stdout)
    return rss


def _env() -> dict[str, str]:
    """The environment of a child that imports this checkout's fleetbox_db and benchmarks."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return dict(os.environ, PYTHONPATH=path)


def profile(case: Case, settle: Callable[[], None], top: int = 30) -> str:
    """cProfile of one sample of *case*, by cumulative then by own time."""
    settle()
    case.prepare()
    profiler = cProfile.Profile()
    profiler.runcall(case.run)
    out: list[str] = []
    for key in ("cumulative", "tottime"):
        stream = _Lines()
        stats = pstats.Stats(profiler, stream=stream)  # type: ignore[arg-type]
        stats.strip_dirs().sort_stats(key).print_stats(top)
        out.append(f"== profile of {case.name}, sorted by {key}\n" + "".join(stream.parts))
    return "\n".join(out)


class _Lines:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--n", type=int, default=10_000, help="members (default 10000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 9; 3 from 100000 members)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument("--rss", action="store_true", help="measure peak RSS (on at 100000)")
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess cases")
    parser.add_argument("--profile", action="append", default=[], metavar="CASE")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR")
    parser.add_argument("--scratch", type=Path, metavar="DIR", help="removed after (or --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    if args.n < 4 or (args.rounds is not None and args.rounds < 1):
        parser.error("--n must be at least 4 and --rounds at least 1")
    unknown = set(args.profile) - set(report.CASES)
    if unknown:
        parser.error(f"unknown --profile case(s) {sorted(unknown)}; one of {list(report.CASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM (a timeout, kill) still runs the finally blocks that remove the scratch copy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    load_start = os.getloadavg()
    n: int = args.n
    rounds: int = args.rounds or (3 if n >= report.BIG_N else 9)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="fleetbox-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    try:
        cached = synth.cached_store(args.cache, n)
        _log(f"copying the store to {scratch} ...")
        bench = Bench(synth.copy_store(cached, scratch / "store"), n, synth.subnet_for(n))
        cases = bench.cases()
        try:
            bench.settle()
            checks = bench.checks()
            if args.no_cli:
                skipped.update(dict.fromkeys(PROCESS_CASES, "--no-cli"))
            else:
                small = synth.cached_store(args.cache, CLI_MEMBERS)
                cli = CliBench(synth.copy_store(small, scratch / "cli-store"))
                why = cli.unavailable()
                cases += cli.cases(with_cli=why is None)
                if why is not None:
                    skipped["cli_ls_json"] = why
            samples = run_rounds(cases, rounds, bench.settle)
            profiles = [profile(_case(cases, name), bench.settle) for name in args.profile]
            rss = measure_rss(bench) if args.rss or n >= report.BIG_N else None
        finally:
            bench.close()
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = _result(bench, samples, checks, skipped, rss, load_start)
    print(report.format_table(result))
    for text in profiles:
        print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(check["ok"] for check in checks) else 1


def _result(
    bench: Bench,
    samples: Samples,
    checks: list[dict[str, Any]],
    skipped: dict[str, str],
    rss: dict[str, Any] | None,
    load_start: tuple[float, float, float],
) -> dict[str, Any]:
    """Everything a run measured, as written by --json."""
    n = bench.n
    notes = [
        "one sample per case per round, one process, warm page cache; cpu = CPU time of"
        " this process and its children, unaffected by other load on the machine"
    ]
    if n > synth.BLOCK_HOSTS:
        notes.append(f"members past {synth.BLOCK_HOSTS:,} spill into the next /16")
    return {
        "benchmark": "benchmarks.store",
        "format": synth.FORMAT_VERSION,
        "n": n,
        "clusters": -(-n // synth.MEMBERS_PER_CLUSTER),
        "rounds": len(next(iter(samples.values()))),
        "subnet": bench.subnet,
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "fleetbox_db": fleetbox_db.__version__,
        "cases": report.summarize(samples, n),
        "skipped": skipped,
        "rss": None if rss is None else {**rss, "verdict": report.rss_verdict(rss, n)},
        "checks": checks,
        "notes": notes,
    }


def _case(cases: list[Case], name: str) -> Case:
    for case in cases:
        if case.name == name:
            return case
    raise SystemExit(f"case {name!r} did not run (skipped?)")


if __name__ == "__main__":
    sys.exit(main())
