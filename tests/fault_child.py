"""Child process for the fault suites: runs one Store operation with a hostile machine.

    python fault_child.py SPEC_JSON

SPEC: {"template": dir, "work": dir, "op": name, "mode": "count" | "inject" | "fsize",
"errno": n, "ks": [k...], "fsize": [bytes...]}. For each k (mode inject) the template root
is copied to <work>/<k>, a Store opened on it, and the k-th call the library makes to one of
the os functions in FAULTY raises OSError(errno); for mode fsize, RLIMIT_FSIZE is set to
each value in turn (the limit of a full filesystem a write hits). One JSON line per run on
stdout: {"k", "outcome": "ok" | class name, "typed", "message", "faulted": function}.

The faults are injected into this process's ``os`` module only: SQLite's own I/O is C and
unaffected (the tmpfs and RLIMIT_FSIZE suites reach it).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetbox_db import VM, FleetboxError, Store

SUBNET = "10.0.0.0/24"
#: The os functions a fault may hit: every syscall the library makes on files by name or fd.
FAULTY = (
    "open",
    "read",
    "write",
    "fsync",
    "rename",
    "replace",
    "stat",
    "lstat",
    "fstat",
    "mkdir",
    "makedirs",
    "unlink",
    "rmdir",
    "scandir",
    "listdir",
    "fchmod",
    "fchown",
    "chown",
    "access",
    "fwalk",
)


def _save(store: Store) -> str:
    vm = store.load("web-1")
    vm.cpus = 8
    return store.save(vm).name


OPS: dict[str, Callable[[Store], Any]] = {
    "list": lambda s: s.list(),
    "vms": lambda s: [vm.name for vm in s.vms()],
    "entries": lambda s: [(e.name, e.state) for e in s.entries()],
    "check": lambda s: sorted(p.kind for p in s.check()),
    "free_ips": lambda s: s.free_ips(SUBNET, limit=3),
    "who_has": lambda s: s.who_has("10.0.0.2"),
    "load": lambda s: s.load("web-1").name,
    "create": lambda s: s.create(VM("new-1"), subnet=SUBNET).ip,
    "save": _save,
    "delete": lambda s: s.delete("db-1"),
    "allocate_ip": lambda s: s.allocate_ip("new-2", SUBNET),
    "reconcile": lambda s: s.reconcile(full=True).added,
    "dry_run": lambda s: s.reconcile(dry_run=True).added,
    "try_lock": lambda s: s.try_lock("web-1").unlock(),
    "migrate": lambda s: s.migrate(),
}


class Injector:
    """Counts calls to the FAULTY os functions; the k-th raises OSError(code)."""

    def __init__(self) -> None:
        self.calls = 0
        self.k = 0
        self.code = 0
        self.faulted: str | None = None
        self.originals = {name: getattr(os, name) for name in FAULTY}

    def arm(self, k: int, code: int) -> None:
        self.calls, self.k, self.code, self.faulted = 0, k, code, None
        for name, original in self.originals.items():
            setattr(os, name, self._wrap(name, original))

    def disarm(self) -> None:
        for name, original in self.originals.items():
            setattr(os, name, original)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def faulty(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.k:
                self.faulted = name
                if os.environ.get("FAULT_TRACE"):
                    import traceback

                    traceback.print_stack()
                raise OSError(self.code, os.strerror(self.code), f"<{name} fault>")
            return original(*args, **kwargs)

        return faulty


def run_one(root: Path, op: str, before: Callable[[], None], after: Callable[[], None]) -> dict:
    store = Store.open(root, busy_timeout=2)
    outcome: dict[str, Any]
    before()
    try:
        result = OPS[op](store)
        outcome = {"outcome": "ok", "typed": True, "message": repr(result)[:200]}
    except BaseException as exc:  # classifying every outcome is the point
        outcome = {
            "outcome": type(exc).__name__,
            "typed": isinstance(exc, FleetboxError) and bool(str(exc)),
            "message": str(exc)[:300],
        }
    finally:
        after()
    store.close()
    return outcome


def main() -> None:
    spec = json.loads(sys.argv[1])
    template, work, op = Path(spec["template"]), Path(spec["work"]), spec["op"]
    injector = Injector()
    if spec["mode"] == "count":
        root = work / "count"
        shutil.copytree(template, root, symlinks=True)
        injector.arm(0, 0)
        out = run_one(root, op, lambda: None, lambda: None)
        injector.disarm()
        print(json.dumps({**out, "calls": injector.calls}), flush=True)
        return
    if spec["mode"] == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a kill, as Python does
        for limit in spec["fsize"]:
            root = work / str(limit)
            shutil.copytree(template, root, symlinks=True)
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

            def lower(limit: int = limit, hard: int = hard) -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

            def restore(hard: int = hard) -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

            out = run_one(root, op, lower, restore)
            print(json.dumps({"k": limit, **out, "faulted": None}), flush=True)
        return
    for k in spec["ks"]:
        root = work / str(k)
        shutil.copytree(template, root, symlinks=True)
        out = run_one(root, op, lambda k=k: injector.arm(k, spec["errno"]), injector.disarm)
        print(json.dumps({"k": k, **out, "faulted": injector.faulted}), flush=True)


if __name__ == "__main__":
    main()
