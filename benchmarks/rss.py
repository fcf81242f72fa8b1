"""Peak RSS of a process doing a store's work.

    python -m benchmarks.rss ROOT SUBNET IP CLUSTER

Run on a root without index.db; prints one JSON object on stdout: the peak resident set
(MB) after each stage, and how long the cold rebuild took. The peak is a high-water mark,
so each figure covers every stage before it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def peak_mb() -> float:
    """This process's peak resident set so far, in MB (10**6 bytes).

    Linux's ru_maxrss also counts the parent's peak at the fork (exec keeps the old mm's
    high-water mark), so a child of a big benchmark process would report the parent;
    VmHWM is the high-water mark of this program's own address space.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB (KiB) to MB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6  # bytes vs KiB


def main(argv: list[str]) -> dict[str, Any]:
    root, subnet, ip, cluster = argv
    out: dict[str, Any] = {"start": peak_mb()}
    from fleetbox_db import Store

    out["import"] = peak_mb()
    started = time.perf_counter()
    store = Store.open(root)
    names = store.list()
    out["cold_rebuild_s"] = time.perf_counter() - started
    out["members"] = len(names)
    out["rebuild"] = peak_mb()
    store.list()
    store.members(cluster)
    store.who_has(ip)
    store.free_ips(subnet, limit=10)
    out["list_and_queries"] = peak_mb()
    out["vms_count"] = len(store.vms())
    out["vms"] = peak_mb()
    store.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
