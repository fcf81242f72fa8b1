"""A config a plan reads again with the same bytes is not parsed again (disk/observe.py
Reparse): beside a Go tool re-saving configs unchanged in place, a reader read and parsed
the same 8 configs for every answer. Real files, real Stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import config, config_path, go_write, later, put

import fleetbox_db.disk.observe as observe_module
from fleetbox_db import Store
from fleetbox_db.disk.observe import Reparse, observe
from fleetbox_db.disk.scan import MemberDir, Signature
from fleetbox_db.records import Key


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The members whose config bytes were digested and parsed (the real function runs)."""
    names: list[str] = []
    real = observe_module._parsed

    def counted(key: Key, *args: Any) -> Any:
        names.append(key.name)
        return real(key, *args)

    monkeypatch.setattr(observe_module, "_parsed", counted)
    return names


def member(root: Path, name: str) -> MemberDir:
    st = os.stat(config_path(root, name))
    return MemberDir("web", name, Signature.of(st), None)


def test_the_same_bytes_are_parsed_once_and_give_the_same_observation(
    seeded_root: Path, parses: list[str]
) -> None:
    clusters = seeded_root / "clusters"
    put(seeded_root, "web-1", ip="10.0.0.2")
    reparse = Reparse()
    then = later()
    first = observe(clusters, member(seeded_root, "web-1"), lambda: then, reparse)
    go_write(config_path(seeded_root, "web-1"), config("web-1", ip="10.0.0.2"))  # same bytes
    again = observe(clusters, member(seeded_root, "web-1"), lambda: then + 1, reparse)
    assert parses == ["web-1"]
    assert again.signature != first.signature  # the new file's, and the new read's time
    assert again.signature == member(seeded_root, "web-1").signature
    assert again.verified_ns == first.verified_ns + 1
    assert again._replace(signature=None, verified_ns=0) == first._replace(
        signature=None, verified_ns=0
    )
    go_write(config_path(seeded_root, "web-1"), config("web-1", ip="10.0.0.9"))
    changed = observe(clusters, member(seeded_root, "web-1"), later, reparse)
    assert parses == ["web-1", "web-1"]
    assert changed.vm is not None
    assert changed.vm.ip == "10.0.0.9"


def test_a_torn_read_is_kept_apart_from_the_whole_file(seeded_root: Path) -> None:
    clusters = seeded_root / "clusters"
    whole = config("web-1", ip="10.0.0.2")
    put(seeded_root, "web-1", data=whole[:10])
    reparse = Reparse()
    torn = observe(clusters, member(seeded_root, "web-1"), later, reparse)
    assert torn.vm is None
    go_write(config_path(seeded_root, "web-1"), whole)
    read = observe(clusters, member(seeded_root, "web-1"), later, reparse)
    assert read.vm is not None
    assert read.vm.ip == "10.0.0.2"


def test_it_keeps_the_last_bytes_of_a_bounded_number_of_members(
    seeded_root: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Reparse, "LIMIT", 2)
    clusters = seeded_root / "clusters"
    for name in ("web-1", "web-2", "web-3"):
        put(seeded_root, name)
    reparse = Reparse()
    for name in ("web-1", "web-2", "web-1", "web-3", "web-1", "web-3", "web-2"):
        observe(clusters, member(seeded_root, name), later, reparse)
    # full at web-3: forgotten, then web-3 kept; web-1 and web-2 read anew
    assert parses == ["web-1", "web-2", "web-3", "web-1", "web-2"]
    assert len(reparse._last) <= 2


def test_a_large_config_is_parsed_every_time_and_not_kept(
    seeded_root: Path, parses: list[str]
) -> None:
    """A hostile tree of configs near the 1 MB cap must not fill memory: at most
    LIMIT * LARGEST bytes are kept."""
    clusters = seeded_root / "clusters"
    padding = b',\n  "notes": "' + b"x" * (Reparse.LARGEST + 1) + b'"\n}'
    put(seeded_root, "web-1", data=config("web-1").rstrip().removesuffix(b"}").rstrip() + padding)
    reparse = Reparse()
    for _ in range(3):
        found = observe(clusters, member(seeded_root, "web-1"), later, reparse)
        assert found.vm is not None
    assert parses == ["web-1"] * 3
    assert reparse._last == {}
    put(seeded_root, "web-1")  # small again: kept
    observe(clusters, member(seeded_root, "web-1"), later, reparse)
    observe(clusters, member(seeded_root, "web-1"), later, reparse)
    assert parses == ["web-1"] * 4


def test_a_reader_beside_a_go_writer_parses_each_unchanged_config_once(
    seeded_root: Path, parses: list[str]
) -> None:
    names = [f"web-{i}" for i in range(6)]
    for i, name in enumerate(names):
        put(seeded_root, name, ip=f"10.0.0.{i + 2}")
    with Store.open(seeded_root, clock=later) as store:
        store.list()
        parses.clear()
        for _ in range(3):
            for i, name in enumerate(names[:3]):  # Go's os.WriteFile of the same config
                go_write(config_path(seeded_root, name), config(name, ip=f"10.0.0.{i + 2}"))
            assert store.who_has("10.0.0.3") == "web-1"
            assert store.vms()[1].ip == "10.0.0.3"
        go_write(config_path(seeded_root, "web-1"), config("web-1", ip="10.0.0.30"))
        assert store.who_has("10.0.0.30") == "web-1"
        assert store.who_has("10.0.0.3") is None
    # Each re-saved config parsed by the first plan that read it, then never again; the
    # rebuild's reads (the first list()) are not kept.
    assert sorted(parses) == sorted([*names[:3], "web-1"])
