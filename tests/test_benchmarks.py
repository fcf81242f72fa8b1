"""The benchmark stays runnable: a tiny store, one round, and the shape of what it reports.

Not timed: the figures at this size mean nothing; only that every case ran and was reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STORE_CASES = {
    "walk",
    "walk_old",
    "parse",
    "list_warm",
    "list_fresh",
    "vms",
    "vms_first",
    "members",
    "who_has",
    "free_ips",
    "free_ips_naive",
    "incremental",
    "cold_rebuild",
    "cold_process",
}
PROCESS_CASES = {"python_startup", "import_sqlalchemy", "cli_ls_json"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out.json"
    argv = [sys.executable, "-m", "benchmarks.store", "--n", "40", "--rounds", "1", "--rss"]
    argv += ["--json", str(out), "--cache", str(tmp / "cache"), "--scratch", str(tmp / "s")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp / "s").exists(), "the scratch copy is removed unless --keep"
    return json.loads(out.read_text()), done.stdout


def test_json_has_every_case_with_a_median_and_ratio(
    bench_run: tuple[dict[str, object], str],
) -> None:
    result, _ = bench_run
    assert result["n"] == 40
    assert result["rounds"] == 1
    cases = result["cases"]
    assert isinstance(cases, dict)
    skipped = result["skipped"]
    assert isinstance(skipped, dict)
    assert set(cases) | set(skipped) == STORE_CASES | PROCESS_CASES
    assert set(cases) >= STORE_CASES
    for name, entry in cases.items():
        assert len(entry["samples_ms"]) == 1, name
        assert entry["median_ms"] > 0, name
        assert (entry["ratio_to_walk"] is None) == (name in PROCESS_CASES), name
    assert cases["walk"]["ratio_to_walk"] == 1.0
    assert cases["cold_rebuild"]["target"]["baseline"] == "parse"
    assert cases["list_warm"]["target"]["binding"] is False  # targets bind at 10,000 only


def test_answers_were_checked_and_rss_measured(bench_run: tuple[dict[str, object], str]) -> None:
    result, _ = bench_run
    checks = result["checks"]
    assert isinstance(checks, list)
    assert checks
    assert all(check["ok"] for check in checks), checks
    rss = result["rss"]
    assert isinstance(rss, dict)
    assert rss["members"] == 40
    assert rss["verdict"]["rebuild_completed"] is True
    assert 0 < rss["import"] <= rss["list_and_queries"] <= rss["vms"]


def test_table_has_one_row_per_case(bench_run: tuple[dict[str, object], str]) -> None:
    result, table = bench_run
    lines = table.splitlines()
    assert lines[0].startswith("fleetbox_db store benchmark: N=40 members (10 clusters)")
    assert lines[1].split()[:5] == ["case", "wall", "x", "walk", "cpu"]
    cases = result["cases"]
    assert isinstance(cases, dict)
    for entry in cases.values():
        assert sum(line.startswith(entry["label"]) for line in lines) == 1, entry["label"]
    assert any(line.startswith("peak RSS: cold rebuild") for line in lines)


def test_cli_case_is_skipped_with_the_reason_when_ls_fails(tmp_path: Path) -> None:
    not_a_root = tmp_path / "file"
    not_a_root.write_text("")
    code = (
        "import sys, pathlib, benchmarks.store as b;"
        " print(b.CliBench(pathlib.Path(sys.argv[1])).unavailable())"
    )
    argv = [sys.executable, "-c", code, str(not_a_root)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.startswith("`fleetbox-db ls --json` failed (exit 2): ")
    assert "is a file" in done.stdout


def test_versus_go_skips_with_a_clear_message_without_go(tmp_path: Path) -> None:
    code = (
        "import sys, benchmarks.versus_go as v;"
        " v.find_go = lambda explicit=None: None;"
        " sys.exit(v.main(['--cache', sys.argv[1]]))"
    )
    argv = [sys.executable, "-c", code, str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("versus_go skipped: no Go toolchain")
    assert list(tmp_path.iterdir()) == []  # nothing built, no store made


def test_a_sample_includes_releasing_what_the_call_returned() -> None:
    """As timeit does: otherwise a case answering with many objects (the floor's stat
    results) is timed without the release every other case pays inside its call."""
    import time

    from benchmarks.store import _timed

    class SlowToRelease:
        def __del__(self) -> None:
            time.sleep(0.05)

    wall_ms, _ = _timed(SlowToRelease)
    assert wall_ms >= 50


def test_contention_alternates_its_windows_under_one_set_of_readers(tmp_path: Path) -> None:
    """Every operation is sampled in both kinds of window, the writers' figures come from
    the contention windows, and a reader call counts for the window it ran in only: a
    call that started in one window and ended in the next (or between) counts for none."""
    from benchmarks import contention

    out = tmp_path / "out.json"
    argv = [sys.executable, "-m", "benchmarks.contention", "--n", "30", "--seconds", "1.2"]
    argv += ["--rounds", "2", "--json", str(out), "--cache", str(tmp_path / "cache")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = json.loads(out.read_text())
    assert result["rounds"] == 2
    for table in ("baseline", "contention"):
        assert set(result[table]) == set(contention.READ_OPS)
        assert all(s["calls"] > 0 for s in result[table].values())
    assert all(result["writers"][k]["calls"] > 0 for k in contention.WRITERS)
    assert "in 2 alternating windows each" in done.stdout
    assert len(contention.verdicts(result)) == 2 * len(contention.READ_OPS) + 2 * 3

    windows = [("reader", {1: {"list": [0.1]}, 2: {"list": [0.2]}, 3: {"list": [0.3]}}, [])]
    assert contention._windows(windows, contention=False)["list"] == [0.1, 0.3]
    assert contention._windows(windows, contention=True)["list"] == [0.2]


def test_a_reader_call_spanning_two_windows_counts_for_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctypes
    from typing import Any

    from benchmarks import contention
    from fleetbox_db import Store

    window = ctypes.c_int(1)
    real_list, real_vms = Store.list, Store.vms
    lists = [0]

    def list_(store: Store) -> Any:
        lists[0] += 1
        if lists[0] == 2:
            window.value = 2  # the window changes while this call runs
        return real_list(store)

    def vms(store: Store) -> Any:
        if lists[0] == 3:
            window.value = contention.STOP
        return real_vms(store)

    monkeypatch.setattr(Store, "list", list_)
    monkeypatch.setattr(Store, "vms", vms)
    reports: list[Any] = []

    class Out:
        def put(self, report: Any) -> None:
            reports.append(report)

    contention._reader(str(tmp_path / "root"), 30, window, Out())  # type: ignore[arg-type]
    ((_, times, _),) = reports
    counted = {w: {op: len(v) for op, v in t.items() if v} for w, t in times.items()}
    # list 1 and vms... in window 1; list 2 spans 1 -> 2; list 3 in window 2 (vms 3 stops)
    assert counted == {
        1: {"list": 1, "vms": 1, "who_has": 1, "free_ips": 1},
        2: {"list": 1, "vms": 1, "who_has": 1, "free_ips": 1},
    }
