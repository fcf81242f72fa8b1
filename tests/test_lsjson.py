"""`ls --json`'s direct writer prints the bytes the generic JSON encoder prints, for any
entries: odd strings, configless members, odd value types, no entries at all. Values only,
plus one real `fleetbox-db ls --json` against the generic path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner
from helpers import put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import VM, Entry, Fixture, Store
from fleetbox_db.cli import cli
from fleetbox_db.cli.lsjson import entries_json
from fleetbox_db.cli.text import entry_record, to_json
from fleetbox_db.rules.config import decode_config, encode_config
from fleetbox_db.rules.spelling import Spelled

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "web-1", "é", "\u2028", "<&>", "\ud800", "a\nb", '"q"', "\x00"]),
)
ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 4096]))
stamps = st.datetimes(
    min_value=datetime(1, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=1))])
)
fixtures = st.builds(Fixture, texts, texts, texts)
vms = st.builds(
    VM,
    name=texts,
    mac=texts,
    cpus=ints,
    memory_mb=ints,
    disk_mb=ints,
    image=texts,
    created_at=stamps,
    fixtures=st.lists(fixtures, max_size=3),
    ip=texts,
)
entries = st.builds(
    Entry, texts, texts, st.sampled_from(["ok", "configless", "unreadable", "stray"]),
    st.one_of(st.none(), vms),
)  # fmt: skip


def generic(items: list[Entry]) -> str:
    return to_json([entry_record(e) for e in items])


@fuzz
@given(st.lists(entries, max_size=4))
def test_direct_writer_equals_the_generic_encoder(items: list[Entry]) -> None:
    assert entries_json(items) == generic(items)


def test_values_of_other_types_take_the_generic_path() -> None:
    odd = [
        VM("a", cpus=True),  # a bool is not an int here: json writes true
        VM("b", image=Spelled("x\ufffd", (True,))),  # a str subclass
        VM("c", fixtures=[Fixture("h", "g", "l", extra={"k": 1})]),
        VM("d", memory_mb=2**70),
    ]
    items = [Entry(vm.name, vm.name, "ok", vm) for vm in odd]
    assert entries_json(items) == generic(items)


def test_a_config_read_back_keeps_its_created_at_text() -> None:
    vm = decode_config(
        encode_config(VM("web-1", created_at=datetime(2024, 3, 1, tzinfo=UTC))).replace(
            b"2024-03-01T00:00:00Z", b"2024-03-01T00:00:00.000000000+00:00"
        )
    )
    items = [Entry("web-1", "web", "ok", vm)]
    assert entries_json(items) == generic(items)
    assert '"2024-03-01T00:00:00.000000000+00:00"' in entries_json(items)


def test_ls_json_prints_what_the_generic_encoder_prints(root: Path) -> None:
    for i in range(5):
        put(root, f"web-{i}", ip=f"10.0.0.{i + 2}")
    (root / "clusters" / "db" / "db").mkdir(parents=True)  # configless
    with Store.open(root) as store:
        expected = generic(store.entries()) + "\n"
    result = CliRunner().invoke(cli, ["--root", str(root), "ls", "--json"])
    assert result.exit_code == 0, result.output
    assert result.output == expected
    assert len(json.loads(result.output)) == 6


def test_the_writer_knows_todays_record_shape() -> None:
    """If entry_record changes shape, every entry goes the generic way (still identical);
    this says the direct writer is actually in use today."""
    from fleetbox_db.cli import lsjson

    assert lsjson._SHAPE
