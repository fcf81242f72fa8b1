"""The records file a new process's first vms() loads (index.db-vms): it may be stale,
missing or garbage, and vms() still answers what disk holds. Real files and Stores only.
"""

from __future__ import annotations

import marshal
from pathlib import Path

import pytest
from helpers import config, go_write, later, put

from fleetbox_db import VM, Store
from fleetbox_db.rules.config import decode_config


def on_disk(root: Path) -> list[VM]:
    """Every member's config decoded from disk, in List() order."""
    paths = sorted((root / "clusters").glob("*/*/config.json"), key=lambda p: p.parts[-3:])
    return [decode_config(p.read_bytes()) for p in paths]


def first_vms(root: Path) -> list[VM]:
    """vms() of a Store that has only listed, as a new process has it."""
    with Store.open(root, clock=later) as store:
        store.list()
        return store.vms()


@pytest.fixture
def fleet(seeded_root: Path) -> Path:
    for i in range(12):
        put(seeded_root, f"web-{i}", ip=f"10.0.0.{i + 2}")
    put(seeded_root, "db", data=config("db", cpus=8).replace(b'"db"', b'"d\\u00e9"', 1))
    return seeded_root


def test_the_first_reader_writes_it_and_the_next_loads_it(fleet: Path) -> None:
    blob = fleet / "index.db-vms"
    assert first_vms(fleet) == on_disk(fleet)
    assert blob.is_file()
    written = blob.stat().st_mtime_ns
    assert first_vms(fleet) == on_disk(fleet)
    assert blob.stat().st_mtime_ns == written  # nothing missing: not written again


def test_a_change_is_read_from_the_index_and_rewrites_the_file(fleet: Path) -> None:
    first_vms(fleet)
    put(fleet, "web-3", ip="10.0.9.9")
    (fleet / "clusters" / "web" / "web-4" / "config.json").unlink()
    put(fleet, "new", ip="10.0.8.8")
    assert first_vms(fleet) == on_disk(fleet)
    assert first_vms(fleet) == on_disk(fleet)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00not marshal", id="not-marshal"),
        pytest.param(marshal.dumps(("another format", {})), id="other-format"),
        pytest.param(marshal.dumps(("fleetbox_db vms 1", [1, 2])), id="not-a-dict"),
        pytest.param(None, id="wrong-record-shape"),
        pytest.param(1, id="wrong-field-types"),
    ],
)
def test_a_bad_file_is_ignored(fleet: Path, garbage: bytes | int | None) -> None:
    blob = fleet / "index.db-vms"
    first_vms(fleet)
    form, stored = marshal.loads(blob.read_bytes())
    if garbage is None:
        garbage = marshal.dumps((form, dict.fromkeys(stored, ("too", "short"))))
    elif garbage == 1:
        wrong = {d: (*r[:7], 5, *r[8:]) for d, r in stored.items()}  # fixtures not a tuple
        garbage = marshal.dumps((form, wrong))
    assert isinstance(garbage, bytes)
    blob.write_bytes(garbage)
    assert first_vms(fleet) == on_disk(fleet)


def test_a_file_from_another_tree_only_misses(fleet: Path, tmp_path: Path) -> None:
    """Records are keyed by the config's digest: another tree's file gives the same VM for
    the same bytes, and nothing for bytes it never saw."""
    other = tmp_path / "other"
    put(other, "web-1", ip="10.0.0.3")  # the same bytes as fleet's web-1
    put(other, "solo", ip="10.9.9.9")
    first_vms(other)
    (fleet / "index.db-vms").write_bytes((other / "index.db-vms").read_bytes())
    assert first_vms(fleet) == on_disk(fleet)


def test_an_unwritable_file_costs_nothing_but_speed(fleet: Path) -> None:
    (fleet / "index.db-vms").mkdir()  # os.replace onto a directory fails
    assert first_vms(fleet) == on_disk(fleet)
    assert first_vms(fleet) == on_disk(fleet)


def test_returned_vms_are_fresh_objects(fleet: Path) -> None:
    with Store.open(fleet, clock=later) as store:
        store.list()
        first = store.vms()
        first[0].fixtures.append(first[0].fixtures[0] if first[0].fixtures else None)  # type: ignore[arg-type]
        first[0].cpus = 99
        assert store.vms() == on_disk(fleet)


def test_a_go_write_of_the_same_name_is_seen(fleet: Path) -> None:
    first_vms(fleet)
    go_write(fleet / "clusters" / "web" / "web-5" / "config.json", config("web-5", cpus=4))
    assert first_vms(fleet) == on_disk(fleet)
