"""U+FFFD as Go 1.26 and Go 1.27 write it, kept through decode, encode, the index and save.

Go 1.26's encoding/json writes each invalid UTF-8 byte of a string as the escape ``\\ufffd``
(and a genuine U+FFFD raw); Go 1.27 writes both raw. A file either wrote, loaded and saved
unchanged, must keep its bytes (SPEC §4); a value built or changed in Python is written as
Go 1.27 writes it. The files under tests/data/ hold the bytes each version writes for the
same VM: an image "ok\\xff", a fixture host path with invalid bytes, and a label holding a
genuine U+FFFD then an invalid byte.
"""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
import tempfile
from pathlib import Path

import pytest
from helpers import put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import VM, Fixture, Store
from fleetbox_db.rules.config import decode_config, encode_config, restore_created_at
from fleetbox_db.rules.gojson import EXACT, clean, decode_json_value, encode_json_value, loads
from fleetbox_db.rules.spelling import Spelled, escapes, respell

DATA = Path(__file__).parent / "data"
GO126 = DATA / "go126-invalid-utf8.json"
GO127 = DATA / "go127-invalid-utf8.json"
GO126_EXTRA = DATA / "go126-invalid-utf8-unknown-keys.json"
R = "\ufffd"  # U+FFFD itself
E = "\\ufffd"  # the six characters Go 1.26 writes for an invalid byte
fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def the_vm() -> VM:
    """The VM both Go files hold, built in Python: every U+FFFD a plain one."""
    vm = VM(
        "web-1",
        mac="c2:e2:65:d7:2f:93",
        image=f"ok{R}",
        fixtures=[Fixture(f"/home/alice/caf{R} {R}{R}x", "/work", f"FBFIX0{R}{R}")],
        ip="192.168.0.2",
    )
    restore_created_at(vm, "2026-06-20T10:11:12.123456789+02:00")  # its nanoseconds
    return vm


# --- the files each Go version writes ------------------------------------------------------


@pytest.mark.parametrize("path", [GO126, GO127, GO126_EXTRA], ids=lambda p: p.stem)
def test_go_file_round_trips_byte_identical(path: Path) -> None:
    data = path.read_bytes()
    assert encode_config(decode_config(data)) == data


def test_both_go_versions_write_one_vm() -> None:
    old, new = decode_config(GO126.read_bytes()), decode_config(GO127.read_bytes())
    assert old == new
    assert old == the_vm()
    assert (old.image, old.fixtures[0].label) == (f"ok{R}", f"FBFIX0{R}{R}")
    assert encode_config(old) == GO126.read_bytes()
    assert encode_config(new) == GO127.read_bytes()


def test_strings_remember_which_u_fffd_were_escaped() -> None:
    vm = decode_config(GO126.read_bytes())
    assert isinstance(vm.image, Spelled)
    assert vm.image.escaped == (True,)
    assert isinstance(vm.fixtures[0].host_path, Spelled)
    assert vm.fixtures[0].host_path.escaped == (True, True, True)
    assert isinstance(vm.fixtures[0].label, Spelled)
    assert vm.fixtures[0].label.escaped == (False, True)  # a genuine U+FFFD, then a byte
    assert type(vm.name) is str
    assert type(vm.fixtures[0].guest_path) is str
    raw = decode_config(GO127.read_bytes())
    assert type(raw.image) is str
    assert type(raw.fixtures[0].label) is str


def test_strings_in_unknown_keys_remember_it_too() -> None:
    vm = decode_config(GO126_EXTRA.read_bytes())
    (key,) = vm.fixtures[0].extra["mount"]
    assert isinstance(key, Spelled)
    assert key.escaped == (True,)
    assert type(vm.fixtures[0].extra["mount"][key]) is str  # "ro,<raw U+FFFD>"
    notes = vm.extra["backend"]["notes"]
    assert isinstance(notes[0], Spelled)
    assert notes[0].escaped == (True, True)
    assert type(notes[1]) is str


def test_a_vm_built_in_python_writes_what_go_127_writes() -> None:
    assert encode_config(the_vm()) == GO127.read_bytes()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda vm: setattr(vm, "image", f"ok{R}"), id="same-text-new-str"),
        pytest.param(lambda vm: setattr(vm, "image", vm.image + ""), id="str-operation"),
        pytest.param(lambda vm: setattr(vm, "image", str(vm.image)), id="str-of-it"),
    ],
)
def test_a_value_set_in_python_is_written_raw(change: object) -> None:
    vm = decode_config(GO126.read_bytes())
    change(vm)  # type: ignore[operator]
    data = encode_config(vm)
    assert f'"image": "ok{R}",'.encode() in data
    # Only that value: the others keep their escapes.
    assert data == GO126.read_bytes().replace(f'"ok{E}"'.encode(), f'"ok{R}"'.encode())


@pytest.mark.parametrize(
    ("written", "rewritten"),
    [
        pytest.param(E, E, id="go-1.26-escape-kept"),
        pytest.param(R, R, id="raw-kept"),
        pytest.param("\\uFFFD", R, id="uppercase-escape-is-not-go-s-written-raw"),
        pytest.param("\\uFffd", R, id="mixed-case-escape-written-raw"),
        pytest.param("\\ud800", R, id="lone-surrogate-escape-written-raw"),
        pytest.param("\\\\ufffd", "\\\\ufffd", id="escaped-backslash-is-text"),
        pytest.param("\\\\\\ufffd", "\\\\\\ufffd", id="backslash-then-escape"),
        pytest.param(f"\\ud83d\\ude00{E}", f"\U0001f600{E}", id="after-a-surrogate-pair"),
        pytest.param(f"\\ud800{E}\\udc00", f"{R}{E}{R}", id="between-lone-surrogates"),
    ],
)
def test_only_go_1_26_s_escape_is_remembered(written: str, rewritten: str) -> None:
    """Other spellings that read as U+FFFD are not what Go writes for a byte: a Go re-save
    writes them raw, and so do we."""
    data = encode_config(VM("web-1", image="@")).replace(b'"@"', f'"{written}"'.encode())
    again = encode_config(decode_config(data))
    assert again == data.replace(f'"{written}"'.encode(), f'"{rewritten}"'.encode())


# --- a Spelled str is a str ------------------------------------------------------------------


def test_spelling_changes_no_comparison_and_survives_copies() -> None:
    vm = decode_config(GO126.read_bytes())
    plain = decode_config(GO127.read_bytes())
    assert vm == plain
    assert vm.image == f"ok{R}"
    assert hash(vm.image) == hash(f"ok{R}")
    assert repr(vm) == repr(plain)
    assert {vm.image: 1} == {f"ok{R}": 1}
    for again in (copy.deepcopy(vm), pickle.loads(pickle.dumps(vm)), copy.copy(vm)):
        assert again == vm
        assert encode_config(again) == GO126.read_bytes()
    assert json.dumps(vm.image) == json.dumps(f"ok{R}")


def test_spelled_needs_one_flag_per_u_fffd() -> None:
    assert Spelled(f"a{R}b{R}", (True, False)).escaped == (True, False)
    with pytest.raises(ValueError, match="one per U\\+FFFD"):
        Spelled(f"a{R}", (True, True))
    with pytest.raises(ValueError, match="one per U\\+FFFD"):
        Spelled("a\ud800", (True,))  # written, the surrogate would be one more U+FFFD


def test_respell_writes_the_flagged_ones_as_the_escape() -> None:
    assert respell(f'"{R}a{R}{R}"', (True, False, True)) == f'"{E}a{R}{E}"'
    with pytest.raises(ValueError, match="shorter"):
        respell(f'"{R}"', (True, False))


# Pieces of a literal's body as Go spells them (plus spellings only a hand edit makes), and
# the one oracle: the escape swapped for a marker Python's own reader keeps.
PIECES = [E, R, "\\uFFFD", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\\\", '\\"', "a", "é"]
PIECES += ["\\u00e9", "\\n", "\\u003c", "\U0001f600", "\ud800"]
MARK = "\ue000"


@fuzz
@given(st.lists(st.sampled_from(PIECES), max_size=12))
def test_reader_flags_each_u_fffd_by_its_spelling(pieces: list[str]) -> None:
    body = "".join(pieces)
    marked = json.loads('"' + "".join(MARK if p == E else p for p in pieces) + '"')
    marked = "".join(R if "\ud800" <= c <= "\udfff" else c for c in marked)
    value = loads(EXACT, '"' + body + '"')
    assert clean(value) == marked.replace(MARK, R)
    expected = tuple(c == MARK for c in marked if c in (R, MARK))
    assert escapes(body) == expected
    if any(expected):
        assert isinstance(value, Spelled)
        assert value.escaped == expected
    else:
        assert type(value) is str


# --- round trips as properties -------------------------------------------------------------

# String literals exactly as Go 1.26 or 1.27 write them: nothing a re-save would change.
GO_PIECES = [E, R, "a", "é", "\\\\", '\\"', "\\n", "\\u003c", "\\u0026", "\\u2028", "\U0001f600"]
go_literals = st.lists(st.sampled_from(GO_PIECES), max_size=6).map(lambda p: '"' + "".join(p) + '"')


def go_file(lits: list[str]) -> bytes:
    """A config.json as Go's MarshalIndent lays it out, its strings the literals given (name,
    mac, image, ip, a fixture's three, then an unknown key holding one in a key and a value).
    """
    name, mac, image, ip, host, guest, label, key, value = lits
    text = (
        f'{{\n  "name": {name},\n  "mac": {mac},\n  "cpus": 2,\n  "memory_mb": 4096,\n'
        f'  "disk_mb": 20480,\n  "image": {image},\n  "created_at": "2026-06-20T08:11:12Z",\n'
        f'  "fixtures": [\n    {{\n      "host_path": {host},\n      "guest_path": {guest},\n'
        f'      "label": {label}\n    }}\n  ],\n  "ip": {ip},\n'
        f'  "x": {{\n    {key}: [\n      {value}\n    ]\n  }}\n}}'
    )
    return text.replace('  "ip": "",\n', "").encode()


@fuzz
@given(st.lists(go_literals, min_size=9, max_size=9))
def test_any_go_file_round_trips_byte_identical(lits: list[str]) -> None:
    data = go_file(lits)
    assert encode_config(decode_config(data)) == data


@fuzz
@given(st.dictionaries(go_literals, go_literals, max_size=3))
def test_json_values_round_trip_with_their_spelling(items: dict[str, str]) -> None:
    text = "{" + ",".join(f"{k}:{v}" for k, v in items.items()) + "}"
    if len(json.loads(text)) != len(items):
        return  # two literals of one key
    assert encode_json_value(decode_json_value(text), compact=True) == text


# --- through the Store and its index -------------------------------------------------------


def _saved_back(store: Store, vms: list[VM]) -> None:
    for vm in vms:
        store.save(vm)


@pytest.mark.parametrize("via", ["load", "vms", "entries", "vms-cached"])
def test_store_saves_go_126_members_back_byte_identical(root: Path, via: str) -> None:
    """load() reads the file; vms() and entries() build the VMs from the index's rows."""
    files = {"web-1": GO126.read_bytes(), "db-3": GO126_EXTRA.read_bytes()}
    paths = {name: put(root, name, data=data) for name, data in files.items()}
    with Store.open(root) as store:
        assert store.list() == ["db-3", "web-1"]  # the index records both
        if via == "vms-cached":
            store.vms()
    with Store.open(root) as store:  # a new Store: nothing cached but the index file
        if via == "load":
            vms = [store.load(name) for name in files]
        elif via == "entries":
            vms = [e.vm for e in store.entries() if e.vm is not None]
        else:
            vms = store.vms()
            if via == "vms-cached":
                vms = store.vms()
        assert len(vms) == 2
        _saved_back(store, vms)
        assert store.vms() == [decode_config(files["db-3"]), decode_config(files["web-1"])]
    for name, data in files.items():
        assert paths[name].read_bytes() == data


def test_index_keeps_the_spelling_of_column_strings_only(root: Path) -> None:
    put(root, "web-1", data=GO126.read_bytes())
    put(root, "db-3", data=GO126_EXTRA.read_bytes())
    put(root, "dev", data=GO127.read_bytes().replace(b'"web-1"', b'"dev"'))
    with Store.open(root) as store:
        store.list()
    with sqlite3.connect(root / "index.db") as conn:
        rows = dict(conn.execute("SELECT config_name, spelling FROM members").fetchall())
    assert rows == {
        "web-1": (
            f'{{"image":"ok{E}","fixtures.0.host_path":"/home/alice/caf{E} {E}{E}x",'
            f'"fixtures.0.label":"FBFIX0{R}{E}"}}'
        ),
        "db-3": f'{{"fixtures.0.host_path":"/src/{E}"}}',  # its extra's JSON keeps its own
        "dev": None,
    }


@settings(fuzz, max_examples=30)
@given(st.lists(go_literals, min_size=9, max_size=9))
def test_any_go_file_saves_back_byte_identical_through_the_index(lits: list[str]) -> None:
    name = "web-1"
    # save() checks the MAC and IP: those two are valid ones.
    data = go_file(['"web-1"', '"02:00:00:00:00:01"', lits[2], '"10.0.0.2"', *lits[4:]])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleetbox"
        path = put(root, name, data=data)
        with Store.open(root) as store:
            store.list()
        with Store.open(root) as store:
            (vm,) = store.vms()
            store.save(vm)
        assert path.read_bytes() == data
