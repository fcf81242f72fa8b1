"""The README's table of faults: every operation under every fault the suites inject, counted.

    python tests/fault_table.py [--bounded] [TMPFS_MOUNT_POINT]

Runs the sweeps of test_faults.py (an errno at the k-th os call, every k; RLIMIT_FSIZE)
and, given an empty 4 MB tmpfs, test_disk_full.py's full disk, on a small store. Prints
one Markdown row per fault: how many runs succeeded, raised a typed FleetboxError,
raised anything else, how many errors came from reads (which should answer from
disk), and how many left disk in a state the outcome does not explain
(test_faults.check_run: a failed write left something behind, a succeeded one is missing,
an index copy moved aside, an answer that differs from disk afterwards).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fault_child  # noqa: E402 - after the path they live on
import test_disk_full as full  # noqa: E402
import test_faults as tf  # noqa: E402
from internals import drop_lease_locks  # noqa: E402

from fleetbox_db import VM, Store  # noqa: E402

OPS = tf.READS + tf.WRITES


def tally(
    counts: Counter[str],
    template: Path,
    root: Path,
    op: str,
    run: dict[str, Any],
    files: list[str] | None = None,
) -> None:
    counts["runs"] += 1
    outcome = "ok" if run["outcome"] == "ok" else ("typed" if run["typed"] else "untyped")
    counts[outcome] += 1
    if op in tf.READS and outcome != "ok":
        counts["read raised"] += 1
    if outcome == "untyped":
        print(f"untyped: {op} {run}", file=sys.stderr)
        return
    try:
        tf.check_run(template, root, op, {**run, "typed": True}, files)
    except AssertionError as exc:
        print(f"unexplained: {str(exc).splitlines()[0]}", file=sys.stderr)
        counts["broken"] += 1


def injected(template: Path, work: Path, label: str, code: int, bounded: bool) -> Counter[str]:
    counts: Counter[str] = Counter()
    for op in OPS:
        sub = work / f"{label}-{op}"
        sub.mkdir()
        spec = {"template": str(template), "work": str(sub), "op": op}
        calls = tf.child({**spec, "mode": "count"})[0]["calls"]
        ks = tf.chosen_ks(calls) if bounded else list(range(1, calls + 1))
        for run in tf.child({**spec, "mode": "inject", "errno": code, "ks": ks}):
            tally(counts, template, sub / str(run["k"]), op, run)
        shutil.rmtree(sub)
    return counts


def fsize(template: Path, work: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    size = (template / "index.db").stat().st_size
    limits = sorted({*tf.FSIZE_LIMITS, size - 1, size, size + 4096})
    for op in OPS:
        sub = work / f"fsize-{op}"
        sub.mkdir()
        spec = {"template": str(template), "work": str(sub), "op": op, "mode": "fsize"}
        for run in tf.child({**spec, "fsize": limits}):
            tally(counts, template, sub / str(run["k"]), op, run)
        shutil.rmtree(sub)
    return counts


def tmpfs(template: Path, where: Path) -> Counter[str]:
    """Each operation on a copy of the store in the tmpfs at *where*, 0-24 pages left free,
    with and without its index; checked once the disk has room again."""
    counts: Counter[str] = Counter()
    for pages in range(25):
        for fresh in (False, True):
            for op in OPS:
                root = where / "root"
                shutil.rmtree(root, ignore_errors=True)
                shutil.copytree(template, root)
                if fresh:
                    (root / "index.db").unlink()
                files = sorted(p.name for p in root.iterdir())
                filler = full.fill(where, pages)
                run = {"k": pages, "faulted": None, **fault_child.run_one(root, op, _n, _n)}
                filler.unlink()
                drop_lease_locks()  # as the child's exit does in the other sweeps
                tally(counts, template, root, op, run, files)
    return counts


def _n() -> None:
    return None


def row(fault: str, c: Counter[str]) -> str:
    counts = (c[k] for k in ("runs", "ok", "typed", "untyped", "read raised", "broken"))
    return f"| {fault} | " + " | ".join(map(str, counts)) + " |"


def main() -> None:
    bounded = "--bounded" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        with Store.open(template) as store:
            store.create(VM("web-1", ip="10.0.0.2"))
            store.create(VM("db-1", ip="10.0.0.3"))
            store.list()
        print(
            "| fault | runs | succeeded | typed error | other error | errors from reads "
            "| disk unexplained |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, code in tf.ERRNOS.items():
            work = Path(tmp) / label
            work.mkdir()
            counts = injected(template, work, label, code, bounded)
            print(row(f"`{label}` at the k-th os call, every k, {len(OPS)} operations", counts))
        work = Path(tmp) / "fsize"
        work.mkdir()
        print(row(f"`RLIMIT_FSIZE` (EFBIG), {len(OPS)} operations", fsize(template, work)))
        if len(sys.argv) > 1 and sys.argv[-1] != "--bounded":  # a tmpfs mounted there
            counts = tmpfs(template, Path(sys.argv[-1]))
            print(
                row(
                    f"4 MB tmpfs, 0-24 pages free, with and without index, {len(OPS)} operations",
                    counts,
                )
            )


if __name__ == "__main__":
    main()
