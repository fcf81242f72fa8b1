"""The targets of issues 7 and 15, and the table and JSON a run produces from its samples."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Final

#: Cases in table order, with their labels. "process" cases are whole interpreter runs,
#: compared with each other rather than with the walk.
CASES: Final = {
    "walk": ("walk: lean scandir + dir_fd stat (floor)", "store"),
    "walk_old": ("walk, old floor: path join + stat per member", "store"),
    "parse": ("parse: walk + read + json.loads", "store"),
    "list_warm": ("list(), same Store", "store"),
    "list_fresh": ("list(), Store.open each time", "store"),
    "vms": ("vms(), same Store (answered before)", "store"),
    "vms_first": ("vms(), first call of a just-listed Store", "store"),
    "members": ("members(cluster)", "store"),
    "who_has": ("who_has(ip)", "store"),
    "free_ips": ("free_ips(/16, limit=10)", "store"),
    "free_ips_naive": ("naive: parse all, scan /16 for 10 free", "store"),
    "incremental": ("list() after 1% rewritten in place", "store"),
    "cold_rebuild": ("list() without index.db (cold rebuild)", "store"),
    "cold_process": ("new process: import + open + list(), no index.db", "store"),
    "python_startup": ("python -c pass", "process"),
    "import_sqlalchemy": ("python -c 'import sqlalchemy'", "process"),
    "cli_ls_json": ("fleetbox-db ls --json, 100 members", "process"),
}

TARGET_N: Final = 10_000
BIG_N: Final = 100_000
RSS_TARGET_MB: Final = 250.0


@dataclass(frozen=True)
class Target:
    """median(case) <= max_ratio * median(baseline), binding for runs at N == at_n."""

    baseline: str
    max_ratio: float
    at_n: int | None  # None: binding at any N (the CLI case has its own 100-member store)


TARGETS: Final = {
    "list_warm": (Target("walk", 1.1, TARGET_N), Target("walk", 1.1, BIG_N)),
    "list_fresh": (Target("walk", 1.25, TARGET_N), Target("walk", 1.25, BIG_N)),
    "vms": (Target("walk", 1.5, TARGET_N),),
    "vms_first": (Target("walk", 1.3, TARGET_N), Target("walk", 1.3, BIG_N)),
    "who_has": (Target("walk", 1.2, TARGET_N),),
    "free_ips": (Target("walk", 1.2, TARGET_N),),
    "incremental": (Target("walk", 1.5, TARGET_N),),
    "cold_rebuild": (Target("parse", 2.5, TARGET_N),),
    "cold_process": (Target("parse", 2.0, TARGET_N),),
    "cli_ls_json": (Target("import_sqlalchemy", 1.5, None),),
}


def _target_for(case: str, n: int) -> tuple[Target, bool] | None:
    options = TARGETS.get(case)
    if not options:
        return None
    for target in options:
        if target.at_n in (None, n):
            return target, True
    return options[0], False


def summarize(samples: dict[str, list[tuple[float, float]]], n: int) -> dict[str, dict[str, Any]]:
    """Per case: wall and CPU medians, samples, ratios to walk, and the target's verdict.

    Verdicts use wall time, as the issue asks; CPU time (this process and its children) is
    reported beside it because it does not move with other processes' load.
    """
    medians = {case: statistics.median(w for w, _ in ms) for case, ms in samples.items() if ms}
    cpu = {case: statistics.median(c for _, c in ms) for case, ms in samples.items() if ms}
    walk, cpu_walk = medians.get("walk"), cpu.get("walk")
    cases: dict[str, dict[str, Any]] = {}
    for case, (label, group) in CASES.items():
        if case not in medians:
            continue
        entry: dict[str, Any] = {
            "label": label,
            "median_ms": round(medians[case], 4),
            "samples_ms": [round(w, 4) for w, _ in samples[case]],
            "ratio_to_walk": (
                round(medians[case] / walk, 3) if walk and group == "store" else None
            ),
            "cpu_median_ms": round(cpu[case], 4),
            "cpu_samples_ms": [round(c, 4) for _, c in samples[case]],
            "cpu_ratio_to_walk": (
                round(cpu[case] / cpu_walk, 3) if cpu_walk and group == "store" else None
            ),
            "target": None,
        }
        picked = _target_for(case, n)
        if picked is not None and picked[0].baseline in medians:
            target, binding = picked
            ratio = medians[case] / medians[target.baseline]
            entry["target"] = {
                "baseline": target.baseline,
                "max_ratio": target.max_ratio,
                "at_n": target.at_n,
                "binding": binding,
                "ratio": round(ratio, 3),
                "pass": ratio <= target.max_ratio,
                "cpu_ratio": round(cpu[case] / cpu[target.baseline], 3),
            }
        cases[case] = entry
    return cases


def rss_verdict(rss: dict[str, Any], n: int) -> dict[str, Any]:
    """The 100,000-member targets: the rebuild completes and peak RSS after vms() stays
    under 250 MB (issue 15; issue 7 bound it before vms())."""
    peak = float(rss["vms"])
    return {
        "max_mb": RSS_TARGET_MB,
        "binding": n == BIG_N,
        "peak_mb": round(peak, 1),
        "rebuild_completed": rss.get("members") == n,
        "pass": peak <= RSS_TARGET_MB and rss.get("members") == n,
    }


def _ms(value: float) -> str:
    if value < 1:
        return f"{value:.3f} ms"
    return f"{value:.2f} ms" if value < 100 else f"{value:,.1f} ms"


def _verdict(passed: bool, binding: bool) -> str:
    if binding:
        return "pass" if passed else "FAIL"
    return "(pass)" if passed else "(miss)"


_HEADER: Final = (
    "case",
    "wall",
    "x walk",
    "cpu",
    "x walk",
    "target",
    "ratio",
    "cpu ratio",
    "result",
)
_NUMERIC: Final = 5  # columns 1-4 right-aligned, the rest left


def _case_row(entry: dict[str, Any]) -> list[str]:
    def times(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    cells = [
        entry["label"],
        _ms(entry["median_ms"]),
        times(entry["ratio_to_walk"]),
        _ms(entry["cpu_median_ms"]),
        times(entry["cpu_ratio_to_walk"]),
    ]
    target = entry["target"]
    if target is None:
        return [*cells, "", "", "", ""]
    base = target["baseline"].replace("import_sqlalchemy", "sqlalchemy import")
    return [
        *cells,
        f"<= {target['max_ratio']}x {base}",
        f"{target['ratio']:.2f}x",
        f"{target['cpu_ratio']:.2f}x",
        _verdict(target["pass"], target["binding"]),
    ]


def _rss_rows(rss: dict[str, Any]) -> list[list[str]]:
    verdict = rss["verdict"]
    rows = [
        ["peak RSS: import fleetbox_db", f"{rss['import']:.1f} MB"],
        ["peak RSS: cold rebuild + list + queries", f"{rss['list_and_queries']:.1f} MB"],
        ["peak RSS: ... + vms()", f"{rss['vms']:.1f} MB"],
        ["cold rebuild in that process, with imports", _ms(rss["cold_rebuild_s"] * 1e3)],
    ]
    rows = [row + [""] * (len(_HEADER) - 2) for row in rows]
    rows[2][5] = f"<= {verdict['max_mb']:.0f} MB"
    rows[2][8] = _verdict(verdict["pass"], verdict["binding"])
    return rows


def format_table(result: dict[str, Any]) -> str:
    """The run as one plain-text table; verdicts in parentheses are not binding at this N.

    Verdicts compare wall-time medians; the cpu columns show the same with CPU time.
    """
    rows = [list(_HEADER)]
    rows += [_case_row(entry) for entry in result["cases"].values()]
    for case, why in result["skipped"].items():
        rows.append([CASES[case][0], "skipped", *[""] * (len(_HEADER) - 3), why])
    if result.get("rss") is not None:
        rows += _rss_rows(result["rss"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = [
        f"fleetbox_db store benchmark: N={result['n']:,} members "
        f"({result['clusters']:,} clusters), {result['rounds']} round(s), medians; "
        f"targets bind at N={TARGET_N:,} (100,000: list and RSS), in parentheses otherwise"
    ]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(widths[i]) for i, cell in enumerate(row) if 0 < i < _NUMERIC]
        cells += [cell.ljust(widths[i]) for i, cell in enumerate(row) if i >= _NUMERIC]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    for check in result["checks"]:
        if not check["ok"]:
            lines.append(f"CHECK FAILED: {check['check']}: {check['detail']}")
    lines.extend(f"note: {note}" for note in result["notes"])
    return "\n".join(lines)
