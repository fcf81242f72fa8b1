"""config.json bytes and Go times: Go-written files round-trip byte for byte; bad ones raise."""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import pickle
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import VM, Fixture, IPConflictError, MACConflictError, Store
from fleetbox_db.errors import ConfigError, InvalidValueError
from fleetbox_db.records import ZERO_TIME
from fleetbox_db.rules import config, deepjson, gojson
from fleetbox_db.rules.config import (
    created_at_text,
    decode_config,
    encode_config,
    restore_created_at,
)
from fleetbox_db.rules.gojson import RawFloat, RawInt, decode_json_value, encode_json_value
from fleetbox_db.rules.gotime import format_go_time, parse_go_time

DATA = Path(__file__).parent / "data"
# The first four were written by Go's MarshalIndent; unknown-keys.json by hand in its layout.
CONFIG_FILES = [
    DATA / name
    for name in [
        "go-web-1.json",
        "go-minimal-utc.json",
        "go-escapes.json",
        "go-negative-offset.json",
        "unknown-keys.json",
    ]
]
PATH = "/x/clusters/web/web-1/config.json"
KNOWN_TOP = {"name", "mac", "cpus", "memory_mb", "disk_mb", "image", "created_at", "fixtures", "ip"}
KNOWN_FIXTURE = {"host_path", "guest_path", "label"}
# No deadline: a loaded CI machine must not turn a slow example into a failure.
fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tz(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def zero_vm(**changes: Any) -> VM:
    """What Go's decoder makes of ``{}``, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "name": "",
        "mac": "",
        "cpus": 0,
        "memory_mb": 0,
        "disk_mb": 0,
        "image": "",
        "created_at": ZERO_TIME,
    }
    return VM(**(fields | changes))


# --- files written by Go -------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_file_round_trips_byte_identical(path: Path) -> None:
    data = path.read_bytes()
    assert not data.endswith(b"\n")
    assert encode_config(decode_config(data, path)) == data


def test_facts_example_decodes_to_its_values() -> None:
    vm = decode_config((DATA / "go-web-1.json").read_bytes())
    assert vm == VM(
        name="web-1",
        mac="c2:e2:65:d7:2f:93",
        created_at=datetime(2026, 6, 20, 10, 11, 12, 123456, tzinfo=tz(120)),
        fixtures=[Fixture("/home/alice/src", "/work", "FBFIX0")],
        ip="192.168.0.2",
    )
    assert created_at_text(vm) == "2026-06-20T10:11:12.123456789+02:00"


def test_escapes_file_decodes_to_raw_text() -> None:
    vm = decode_config((DATA / "go-escapes.json").read_bytes())
    assert vm.name == "café-日本-1"
    assert vm.image == "https://example.com/img?a=1&b=<2>\u2028\u2029😀"
    assert vm.fixtures[0].host_path == '/tmp/"quoted" \\back\\slash'
    assert vm.fixtures[0].guest_path == "/line\nbreak\ttab\rcr\bbs\fff"
    assert vm.fixtures[0].label == "\x00\x01\x1f\x7f"
    assert vm.created_at == datetime(2026, 6, 20, 8, 11, 12, 500000, tzinfo=UTC)


def test_unknown_keys_are_kept_in_order_with_their_number_text() -> None:
    vm = decode_config((DATA / "unknown-keys.json").read_bytes())
    order = ["backend", "ratio", "huge", "tiny", "big_float", "neg_zero", "tags", "note"]
    assert list(vm.extra) == order
    assert vm.extra["backend"] == {
        "kind": "cloud-hypervisor",
        "tap": "fbtap3",
        "queues": [],
        "opts": {},
    }
    assert isinstance(vm.extra["ratio"], RawFloat)
    assert vm.extra["ratio"].text == "1.0"
    assert vm.extra["ratio"] == 1.0
    assert vm.extra["huge"] == 123456789012345678901234567890
    assert vm.extra["big_float"] == float("inf")
    assert isinstance(vm.extra["neg_zero"], RawInt)
    assert vm.extra["neg_zero"].text == "-0"
    assert vm.extra["tags"][3][1] == {"deep": "<b> & é"}
    assert vm.fixtures[0].extra == {"readonly": True, "uid": 0}


# --- byte format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<>&", r'"\u003c\u003e\u0026"', id="html"),
        pytest.param("\u2028\u2029", r'"\u2028\u2029"', id="line-separators"),
        pytest.param("\x00\x01\x1f", r'"\u0000\u0001\u001f"', id="control-lowercase-hex"),
        pytest.param("\b\f\n\r\t", r'"\b\f\n\r\t"', id="short-escapes"),
        pytest.param("\x7f", '"\x7f"', id="del-raw"),
        pytest.param('"\\/', r'"\"\\/"', id="quote-backslash-slash"),
        pytest.param("é日😀\ufffd", '"é日😀\ufffd"', id="non-ascii-raw"),
        pytest.param("a\ud800b\udc00", '"a\ufffdb\ufffd"', id="lone-surrogates"),
    ],
)
def test_strings_are_escaped_as_go_does(text: str, expected: str) -> None:
    assert encode_json_value(text) == expected
    vm = zero_vm(name=text)
    assert encode_config(vm).decode().splitlines()[1] == f'  "name": {expected},'


def test_fixtures_and_ip_are_omitted_when_empty() -> None:
    text = encode_config(zero_vm(fixtures=[], ip="")).decode()
    assert text == (
        '{\n  "name": "",\n  "mac": "",\n  "cpus": 0,\n  "memory_mb": 0,\n  "disk_mb": 0,\n'
        '  "image": "",\n  "created_at": "0001-01-01T00:00:00Z"\n}'
    )


def test_extra_is_written_after_known_keys_go_indented() -> None:
    vm = zero_vm(
        ip="10.0.0.2",
        fixtures=[Fixture("/a", "/b", "FBFIX0", {"z": []})],
        extra={"a": {"b": [1, {}], "c": {}}, "d": RawFloat("1.50")},
    )
    assert encode_config(vm).decode().split('"created_at": "0001-01-01T00:00:00Z",\n')[1] == (
        '  "fixtures": [\n    {\n      "host_path": "/a",\n      "guest_path": "/b",\n'
        '      "label": "FBFIX0",\n      "z": []\n    }\n  ],\n  "ip": "10.0.0.2",\n'
        '  "a": {\n    "b": [\n      1,\n      {}\n    ],\n    "c": {}\n  },\n  "d": 1.50\n}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({}, "{}", id="empty-object"),
        pytest.param([], "[]", id="empty-array"),
        pytest.param([None, True, False], "[\n  null,\n  true,\n  false\n]", id="literals"),
        pytest.param({"a": [[]]}, '{\n  "a": [\n    []\n  ]\n}', id="nested"),
        pytest.param(2.5, "2.5", id="float"),
        pytest.param(1e300, "1e+300", id="float-exponent"),
        pytest.param(2**70, str(2**70), id="big-int"),
        pytest.param(RawInt("-0"), "-0", id="raw-int"),
        pytest.param(RawFloat("1E400"), "1E400", id="raw-float"),
    ],
)
def test_encode_json_value(value: Any, expected: str) -> None:
    assert encode_json_value(value) == expected
    assert decode_json_value(expected) == value


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1.0", id="float-text"),
        pytest.param("-0", id="negative-zero"),
        pytest.param("1e400", id="overflow"),
        pytest.param("1.50e-3", id="exponent"),
        pytest.param("1" * 5000, id="int-past-python-limit"),
        pytest.param('{\n  "x": [\n    -0.0\n  ]\n}', id="nested"),
    ],
)
def test_json_value_numbers_keep_their_text(text: str) -> None:
    assert encode_json_value(decode_json_value(text)) == text


def test_decode_json_value_rejects_non_json() -> None:
    for text, reason in [("{", "Expecting"), ("NaN", "NaN is not"), ("[" * 100_000, "deeply")]:
        with pytest.raises(ValueError, match=reason):
            decode_json_value(text)


def test_raw_numbers_pickle_and_validate() -> None:
    values: list[RawFloat | RawInt] = [RawFloat("1.0"), RawInt("-0")]
    for value in values:
        clone = pickle.loads(pickle.dumps(value))
        assert type(clone) is type(value)
        assert clone.text == value.text
        assert copy.deepcopy(value).text == value.text
    for bad in ["", "nan", "1_0", " 1", "+1", "01", "1."]:
        with pytest.raises(ValueError, match="is not a JSON number"):
            RawFloat(bad)
    with pytest.raises(ValueError, match="is not a JSON integer"):
        RawInt("1.0")


# --- Go times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "2026-06-20T10:11:12.123456789+02:00",
            datetime(2026, 6, 20, 10, 11, 12, 123456, tzinfo=tz(120)),
            id="nanoseconds",
        ),
        pytest.param(
            "2026-06-20T08:11:12.5Z", datetime(2026, 6, 20, 8, 11, 12, 500000, UTC), id="z"
        ),
        pytest.param(
            "2026-06-20T08:11:12Z", datetime(2026, 6, 20, 8, 11, 12, tzinfo=UTC), id="whole"
        ),
        pytest.param(
            "1999-12-31T23:59:59.000001-09:30",
            datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=tz(-570)),
            id="negative-offset",
        ),
        pytest.param(
            "2026-06-20T08:11:12-00:00", datetime(2026, 6, 20, 8, 11, 12, tzinfo=UTC), id="-0"
        ),
        pytest.param("0001-01-01T00:00:00Z", ZERO_TIME, id="zero-time"),
        pytest.param(
            "2026-06-20T08:11:12.1234567891234Z",
            datetime(2026, 6, 20, 8, 11, 12, 123456, tzinfo=UTC),
            id="more-than-nine-digits",
        ),
        # Go's time.Parse fallback accepts these, so Go reads such files.
        pytest.param(
            "2026-06-20T8:11:12Z", datetime(2026, 6, 20, 8, 11, 12, tzinfo=UTC), id="1-digit-hour"
        ),
        pytest.param(
            "2026-06-20T08:11:12,5Z", datetime(2026, 6, 20, 8, 11, 12, 500000, UTC), id="comma"
        ),
        pytest.param(
            "2026-06-20T08:11:12+00:60",
            datetime(2026, 6, 20, 8, 11, 12, tzinfo=tz(60)),
            id="60-min",
        ),
        pytest.param(
            "2024-02-29T23:59:59+23:59",
            datetime(2024, 2, 29, 23, 59, 59, tzinfo=tz(1439)),
            id="leap",
        ),
    ],
)
def test_parse_go_time(text: str, expected: datetime) -> None:
    parsed = parse_go_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_a_config_that_does_not_parse_leaves_no_reference_cycle() -> None:
    """The error must not hold the frame that raised it: such a cycle keeps every caller's
    frame (a reader's whole scan) alive until the collector runs, and beside a Go-style
    writer every torn read made one (measured: collections 3x as costly per answer)."""
    broken = (b'{"name": "x", "cpus": ', b"[1]", b'{"cpus": "x"}', b"\xef\xbb\xbf{}", b"")
    gc.collect()
    gc.disable()
    try:
        for data in broken:
            with pytest.raises(ConfigError) as info:
                decode_config(data, "/root/clusters/web/web-1/config.json")
            assert info.value.reason
            del info
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("2026-06-20T08:11:12", id="no-zone"),
        pytest.param("2026-06-20t08:11:12Z", id="lowercase-t"),
        pytest.param("2026-06-20T08:11:12z", id="lowercase-z"),
        pytest.param("2026-06-20 08:11:12Z", id="space"),
        pytest.param("2026-06-20T08:11:12+0200", id="offset-no-colon"),
        pytest.param("2026-06-20T08:11:12+02", id="offset-hours-only"),
        pytest.param("2026-06-20T08:11:12+25:00", id="offset-hour-25"),
        pytest.param("2026-06-20T08:11:12+02:61", id="offset-minute-61"),
        pytest.param("2026-06-20T24:00:00Z", id="hour-24"),
        pytest.param("2026-06-20T08:60:00Z", id="minute-60"),
        pytest.param("2026-06-20T08:11:60Z", id="leap-second"),
        pytest.param("2026-02-29T08:11:12Z", id="not-leap-year"),
        pytest.param("2026-6-20T08:11:12Z", id="1-digit-month"),
        pytest.param("2026-06-20T08:1:12Z", id="1-digit-minute"),
        pytest.param("2026-06-20T08:11:12.Z", id="dot-no-digits"),
        pytest.param("2026-06-20T08:11:12Z ", id="trailing-space"),
        pytest.param("2026-06-20T08:11:12Z\n", id="trailing-newline"),
        pytest.param("+2026-06-20T08:11:12Z", id="sign"),
        pytest.param("\uff12026-06-20T08:11:12Z", id="fullwidth-digit"),
        # Go accepts these two, but Python's datetime cannot hold them.
        pytest.param("0000-01-01T00:00:00Z", id="year-0"),
        pytest.param("2026-06-20T08:11:12+24:00", id="offset-24h"),
    ],
)
def test_parse_go_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        parse_go_time(text)


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        pytest.param(
            datetime(2026, 6, 20, 10, 11, 12, 123456, tzinfo=tz(120)),
            "2026-06-20T10:11:12.123456+02:00",
            id="micro",
        ),
        pytest.param(
            datetime(2026, 6, 20, 8, 11, 12, 500000, UTC), "2026-06-20T08:11:12.5Z", id="trim"
        ),
        pytest.param(
            datetime(2026, 6, 20, 8, 11, 12, tzinfo=UTC), "2026-06-20T08:11:12Z", id="no-dot"
        ),
        pytest.param(
            datetime(2026, 6, 20, 8, 11, 12, tzinfo=tz(0)), "2026-06-20T08:11:12Z", id="+0"
        ),
        pytest.param(
            datetime(5, 1, 2, 3, 4, 5, 10, tzinfo=tz(-30)),
            "0005-01-02T03:04:05.00001-00:30",
            id="year-5",
        ),
        pytest.param(
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=tz(-1439)),
            "9999-12-31T23:59:59-23:59",
            id="max",
        ),
    ],
)
def test_format_go_time(dt: datetime, expected: str) -> None:
    assert format_go_time(dt) == expected


@pytest.mark.parametrize(
    "dt",
    [
        pytest.param(datetime(2026, 6, 20), id="naive"),
        pytest.param(datetime(2026, 6, 20, tzinfo=timezone(timedelta(seconds=30))), id="seconds"),
    ],
)
def test_format_go_time_rejects(dt: datetime) -> None:
    with pytest.raises(ValueError, match=r"time zone|whole minutes"):
        format_go_time(dt)


aware_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.integers(-1439, 1439).map(tz),
)


@fuzz
@given(aware_datetimes)
def test_format_then_parse_is_identity(dt: datetime) -> None:
    parsed = parse_go_time(format_go_time(dt))
    assert parsed == dt
    assert parsed.utcoffset() == dt.utcoffset()


def test_unchanged_created_at_keeps_its_text() -> None:
    data = (DATA / "go-web-1.json").read_bytes()
    vm = decode_config(data)
    vm.created_at = copy.copy(vm.created_at)  # an equal value is not a change
    assert encode_config(vm) == data
    assert encode_config(copy.deepcopy(vm)) == data


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(timedelta(seconds=1), "2026-06-20T10:11:13.123456+02:00", id="later"),
        pytest.param(timedelta(0), "2026-06-20T08:11:12.123456Z", id="same-instant-utc"),
    ],
)
def test_changed_created_at_is_reformatted(change: timedelta, expected: str) -> None:
    vm = decode_config((DATA / "go-web-1.json").read_bytes())
    vm.created_at = (vm.created_at + change).astimezone(UTC if not change else tz(120))
    assert created_at_text(vm) == expected
    assert f'"created_at": "{expected}"'.encode() in encode_config(vm)


def test_restore_created_at_remembers_the_text() -> None:
    vm = VM("web-1")
    restore_created_at(vm, "2026-06-20T08:11:12,500000001+00:60")
    assert vm.created_at == datetime(2026, 6, 20, 8, 11, 12, 500000, tzinfo=tz(60))
    assert created_at_text(vm) == "2026-06-20T08:11:12,500000001+00:60"
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        restore_created_at(vm, "yesterday")


def test_new_vm_defaults() -> None:
    vm = VM("dev")
    assert (vm.mac, vm.cpus, vm.memory_mb, vm.disk_mb, vm.image, vm.ip) == (
        "",
        2,
        4096,
        20480,
        "debian-12",
        "",
    )
    assert vm.created_at.utcoffset() is not None
    assert abs(vm.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert decode_config(encode_config(vm)) == vm


# --- lenient reading -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"{}", zero_vm(), id="empty-object"),
        pytest.param(b" \r\n\t{ }\n", zero_vm(), id="whitespace"),
        pytest.param(
            b'{"name": null, "cpus": null, "created_at": null, "fixtures": null, "ip": null}',
            zero_vm(),
            id="nulls",
        ),
        pytest.param(b'{"fixtures": []}', zero_vm(), id="fixtures-empty"),
        pytest.param(
            b'{"fixtures": [null, {"label": null}]}',
            zero_vm(fixtures=[Fixture("", "", ""), Fixture("", "", "")]),
            id="null-fixture",
        ),
        pytest.param(
            b'{"NAME": "a", "Cpus": 3, "MEMORY_mb": 4, "di\xc5\xbfk_mb": 5, "IP": "1.2.3.4"}',
            zero_vm(name="a", cpus=3, memory_mb=4, disk_mb=5, ip="1.2.3.4"),
            id="case-insensitive",
        ),
        pytest.param(
            b'{"fixtures": [{"HOST_PATH": "/h", "Label": "L"}], "disK_mb": 6}',
            zero_vm(fixtures=[Fixture("/h", "", "L")], disk_mb=6),
            id="case-insensitive-fixture-and-kelvin",
        ),
        pytest.param(b'{"name": "a", "name": "b"}', zero_vm(name="b"), id="duplicate-last-wins"),
        pytest.param(b'{"name": "a", "NAME": "b"}', zero_vm(name="b"), id="fold-then-exact"),
        pytest.param(b'{"NAME": "b", "name": "a"}', zero_vm(name="a"), id="exact-then-fold"),
        pytest.param(b'{"cpus": 3, "cpus": null}', zero_vm(cpus=3), id="null-keeps-earlier"),
        pytest.param(b'{"fixtures": [{}], "fixtures": null}', zero_vm(), id="null-fixtures-clears"),
        pytest.param(b'{"cpus": -0}', zero_vm(cpus=0), id="negative-zero"),
        pytest.param(
            b'{"cpus": 9223372036854775807, "disk_mb": -9223372036854775808}',
            zero_vm(cpus=2**63 - 1, disk_mb=-(2**63)),
            id="int64-bounds",
        ),
        pytest.param(b'{"\\u006eame": "\\u0061"}', zero_vm(name="a"), id="escaped-key"),
        pytest.param(
            b'{"name": "\\ud800x\\udc00\\ud800\\ud83d\\ude00"}',
            zero_vm(name="\ufffdx\ufffd\ufffd😀"),
            id="lone-surrogates",
        ),
        pytest.param(
            b'{"name": "a\xffb\xe2\x82c\xed\xa0\x80"}',
            zero_vm(name="a\ufffdb\ufffd\ufffdc\ufffd\ufffd\ufffd"),
            id="invalid-utf8-per-byte",
        ),
        pytest.param(
            b'{"created_at": "2026-06-20T08:11:12\\u002b02:00"}',
            zero_vm(created_at=datetime(2026, 6, 20, 8, 11, 12, tzinfo=tz(120))),
            id="escaped-created-at",
        ),
    ],
)
def test_lenient_reading(data: bytes, expected: VM) -> None:
    vm = decode_config(data)
    assert vm == expected
    assert decode_config(encode_config(vm)) == vm


def test_folded_keys_are_written_canonically() -> None:
    vm = decode_config(b'{"NAME": "a", "Fixtures": [{"LABEL": "x"}], "zz": 1}')
    assert vm.extra == {"zz": 1}
    text = encode_config(vm).decode()
    assert '"name": "a"' in text
    assert '"label": "x"' in text
    assert "NAME" not in text
    assert "LABEL" not in text


def test_lenient_created_at_text_is_written_back_as_read() -> None:
    data = b'{"created_at": "2026-06-20T8:11:12,5+00:60"}'
    assert b'"created_at": "2026-06-20T8:11:12,5+00:60"' in encode_config(decode_config(data))


# --- unreadable files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "not valid JSON (line 1 column 1", id="empty-file"),
        pytest.param(b'{"name": "a"', "not valid JSON (line 1 column 13", id="truncated"),
        pytest.param(b'{"a": 1,}', "not valid JSON", id="trailing-comma"),
        pytest.param(b"{}x", "not valid JSON", id="trailing-garbage"),
        pytest.param(b'{"a": NaN}', "NaN is not a JSON value", id="nan"),
        pytest.param(b'{"a": -Infinity}', "-Infinity is not a JSON value", id="infinity"),
        pytest.param(b"\xef\xbb\xbf{}", "byte order mark", id="bom"),
        pytest.param('{"name": "a"}'.encode("utf-16"), "not valid JSON", id="utf-16"),
        pytest.param(b'{"name": "a\x01"}', "not valid JSON", id="raw-control-char"),
        pytest.param(b"[" * 100_000, "nested too deeply", id="deep-array"),
        pytest.param(b'{"x": ' * 50_000, "nested too deeply", id="deep-object"),
        pytest.param(b"[]", "does not hold a JSON object (it holds an array)", id="array"),
        pytest.param(b"null", "does not hold a JSON object (it holds null)", id="null"),
        pytest.param(b'"x"', "does not hold a JSON object (it holds a string)", id="string"),
        pytest.param(
            b'{"cpus": 1.5}', '"cpus": expected an integer, got a number (1.5)', id="float"
        ),
        pytest.param(b'{"cpus": 1.0}', '"cpus": expected an integer, got a number (1.0)', id="1.0"),
        pytest.param(b'{"cpus": 1e2}', '"cpus": expected an integer, got a number (1e2)', id="exp"),
        pytest.param(b'{"cpus": "2"}', '"cpus": expected an integer, got a string', id="int-str"),
        pytest.param(
            b'{"cpus": true}', '"cpus": expected an integer, got a boolean', id="int-bool"
        ),
        pytest.param(b'{"cpus": 9223372036854775808}', "outside the 64-bit", id="int-over"),
        pytest.param(b'{"cpus": -9223372036854775809}', "outside the 64-bit", id="int-under"),
        pytest.param(b'{"cpus": ' + b"9" * 5000 + b"}", "(99999999999999999999...", id="int-huge"),
        pytest.param(b'{"x": ' + b"9" * 5000 + b",}", "not valid JSON (line 1 col", id="huge-bad"),
        pytest.param(b'{"name": 5}', '"name": expected a string, got a number', id="str-number"),
        pytest.param(b'{"ip": false}', '"ip": expected a string, got a boolean', id="str-bool"),
        pytest.param(b'{"mac": []}', '"mac": expected a string, got an array', id="str-array"),
        pytest.param(b'{"image": {}}', '"image": expected a string, got an object', id="str-obj"),
        pytest.param(b'{"created_at": ""}', "invalid created_at: '' is not", id="time-empty"),
        pytest.param(b'{"created_at": "today"}', "invalid created_at", id="time-bad"),
        pytest.param(b'{"created_at": 5}', '"created_at": expected an RFC 3339', id="time-num"),
        pytest.param(
            b'{"created_at": "0000-01-01T00:00:00Z"}', "year 0 is out of range", id="time-year-0"
        ),
        pytest.param(b'{"fixtures": {}}', '"fixtures": expected an array', id="fixtures-obj"),
        pytest.param(b'{"fixtures": "x"}', '"fixtures": expected an array', id="fixtures-str"),
        pytest.param(b'{"fixtures": [5]}', '"fixtures[0]": expected an object', id="fixture-num"),
        pytest.param(b'{"fixtures": [{}, []]}', '"fixtures[1]": expected an', id="fixture-arr"),
        pytest.param(
            b'{"fixtures": [{"label": 5}]}', '"fixtures[0].label": expected a string', id="label"
        ),
        pytest.param(b'{"cpus": "x", "cpus": 3}', '"cpus": expected an integer', id="dup-bad"),
    ],
)
def test_unreadable_raises_config_error_naming_path(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_config(data, PATH)
    message = str(info.value)
    assert message.startswith(f"config.json at {PATH} ")
    assert reason in message
    assert message.endswith("; fix or remove the file")
    assert info.value.path == Path(PATH)
    assert info.value.name == "web-1"


def test_config_error_without_path() -> None:
    with pytest.raises(ConfigError, match=r"^config.json is not valid JSON") as info:
        decode_config(b"{")
    assert info.value.path is None
    assert info.value.name is None


@settings(fuzz, max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_vm_or_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        decode_config(data)


@settings(fuzz, max_examples=300)
@given(st.sampled_from(CONFIG_FILES), st.integers(0, 10_000), st.binary(max_size=4))
def test_damaged_go_files_give_vm_or_config_error(path: Path, at: int, junk: bytes) -> None:
    data = path.read_bytes()
    at %= len(data)
    for damaged in [data[:at], data[:at] + junk + data[at:], data[:at] + junk + data[at + 1 :]]:
        try:
            vm = decode_config(damaged)
        except ConfigError:
            continue
        assert decode_config(encode_config(vm)) == vm


# --- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"created_at": datetime(2026, 1, 1)}, "created_at", id="naive"),
        pytest.param(
            {"created_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=1)))},
            "not whole minutes",
            id="offset-seconds",
        ),
        pytest.param({"created_at": "2026-01-01T00:00:00Z"}, "created_at must be", id="time-str"),
        pytest.param({"cpus": True}, "cpus must be an int, not bool", id="bool"),
        pytest.param({"cpus": 2.0}, "cpus must be an int, not float", id="float"),
        pytest.param({"memory_mb": 2**63}, "memory_mb is 9223372036854775808", id="int-over"),
        pytest.param({"disk_mb": -(2**63) - 1}, "outside the 64-bit range", id="int-under"),
        pytest.param({"mac": None}, "mac must be a str, not NoneType", id="mac-none"),
        pytest.param({"ip": b"1.2.3.4"}, "ip must be a str, not bytes", id="ip-bytes"),
        pytest.param(
            {"fixtures": (Fixture("a", "b", "c"),)}, "fixtures must be a list", id="tuple"
        ),
        pytest.param({"fixtures": [{"label": "x"}]}, "fixtures[0] must be a Fixture", id="dict"),
        pytest.param(
            {"fixtures": [Fixture("a", "b", 0)]},  # type: ignore[arg-type]
            "fixtures[0].label must be",
            id="label",
        ),
        pytest.param(
            {"fixtures": [Fixture("a", "b", "c", {"Label": 1})]},
            "'Label' names a known",
            id="fx-key",
        ),
        pytest.param({"extra": {"NAME": 1}}, "'NAME' names a known field", id="extra-known-key"),
        pytest.param({"extra": {"ip": 1}}, "'ip' names a known field", id="extra-ip"),
        pytest.param({"extra": {"x": float("nan")}}, "nan is not a JSON number", id="nan"),
        pytest.param({"extra": {"x": (1, 2)}}, "tuple", id="extra-tuple"),
        pytest.param({"extra": {"x": {1: 2}}}, "key 1 is not a str", id="extra-int-key"),
        pytest.param({"extra": []}, "extra must be a dict", id="extra-list"),
        pytest.param({"extra": {"x": 10**5000}}, "too long to write", id="extra-huge-int"),
    ],
)
def test_encode_rejects_bad_values_naming_the_vm(changes: dict[str, Any], reason: str) -> None:
    vm = VM("web-1", created_at=ZERO_TIME)
    for key, value in changes.items():
        setattr(vm, key, value)
    with pytest.raises(InvalidValueError, match="VM 'web-1'") as info:
        encode_config(vm)
    assert reason in str(info.value)
    assert info.value.name == "web-1"


def test_encode_rejects_deep_extra() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidValueError, match="nested too deeply"):
        encode_config(VM("web-1", extra={"x": deep}))
    with pytest.raises(InvalidValueError):
        encode_json_value(deep)


def test_created_at_text_rejects_naive() -> None:
    with pytest.raises(InvalidValueError, match="VM 'web-1'"):
        created_at_text(VM("web-1", created_at=datetime(2026, 1, 1)))


# --- round trips ---------------------------------------------------------------------------


def _is_known(key: str, known: set[str]) -> bool:
    folded = key.replace("\u017f", "s").replace("\u212a", "k")
    return folded.isascii() and folded.lower() in known


ints = st.integers(-(2**63), 2**63 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _extras(known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.text(max_size=10).filter(lambda key: not _is_known(key, known))
    return st.dictionaries(keys, json_values, max_size=3)


fixtures = st.builds(
    Fixture, st.text(), st.text(), st.text(), st.one_of(st.just({}), _extras(KNOWN_FIXTURE))
)
vms = st.builds(
    VM,
    name=st.text(),
    mac=st.text(max_size=20),
    cpus=ints,
    memory_mb=ints,
    disk_mb=ints,
    image=st.text(),
    created_at=aware_datetimes,
    fixtures=st.lists(fixtures, max_size=3),
    ip=st.text(max_size=20),
    extra=st.one_of(st.just({}), _extras(KNOWN_TOP)),
)


@fuzz
@given(vms)
def test_encode_decode_round_trip(vm: VM) -> None:
    data = encode_config(vm)
    again = decode_config(data)
    assert again == vm
    assert encode_config(again) == data
    json.loads(data)  # and it is plain JSON


@fuzz
@given(json_values)
def test_json_value_round_trip(value: Any) -> None:
    text = encode_json_value(value)
    assert decode_json_value(text) == value
    assert encode_json_value(decode_json_value(text)) == text


# The fast path is an optimisation of the exact, key-by-key reader: both must agree on any input.
member_values = st.sampled_from(
    [
        *['"a"', '"\\ud800"', '"é"', "1", "-0", "1.5", "null", "true", "[]", "{}"],
        *['[null, {"label": "x"}]', '[{"label": "x", "label": null, "LABEL": "y"}]'],
        *['"2026-06-20T08:11:12.5Z"', '"2026-06-20T8:11:12Z"', '"2026-02-30T08:11:12Z"'],
    ]
)
member_keys = st.sampled_from([*sorted(KNOWN_TOP), "NAME", "Cpus", "x", "label"])
documents = st.lists(st.tuples(member_keys, member_values), max_size=10).map(
    lambda pairs: "{" + ", ".join(f'"{key}": {value}' for key, value in pairs) + "}"
)


@fuzz
@given(documents)
def test_fast_path_agrees_with_exact_reader(text: str) -> None:
    try:
        exact: VM | None = config._exact_vm(config._EXACT.decode(text))
    except config._Invalid:
        exact = None
    try:
        fast: VM | None = decode_config(text.encode())
    except ConfigError:
        fast = None
    assert fast == exact
    if fast is not None and exact is not None:
        assert created_at_text(fast) == created_at_text(exact)
        assert encode_config(fast) == encode_config(exact)


# --- nesting as deep as Go reads -----------------------------------------------------------
# Go's encoding/json scanner reads text nested up to maxNestingDepth = 10000 arrays and
# objects, the outermost (the config's own object) counting as level 1, and fails at the
# bracket that opens level 10001 ("exceeded max depth"). Python's C decoder gives up near its
# recursion limit (about 1000): a config Go reads must not be "unreadable" here, or its IP and
# MAC would be handed out again.

GO_MAX_DEPTH = 10_000
DEEP_HEAD = '{"name": "web-1", "ip": "10.0.0.2", "notes": '


def nested(kind: str, levels: int) -> str:
    """Compact JSON for ``levels`` arrays or objects, each holding the next; the innermost empty."""
    if kind == "array":
        return "[" * levels + "]" * levels
    return '{"x":' * (levels - 1) + "{}" + "}" * (levels - 1)


def deep_config(depth: int, kind: str = "array") -> bytes:
    """A config ``depth`` levels deep in all, its own object counted; "mac" after the deep value."""
    return f'{DEEP_HEAD}{nested(kind, depth - 1)}, "mac": "02:00:00:00:00:01"}}'.encode()


def depth_of(value: Any) -> int:
    """How many lists and dicts deep ``value`` is, counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


def go_array_chain(levels: int, indent: str) -> str:
    """MarshalIndent's text for ``levels`` nested arrays, the first starting after ``indent``."""
    opens = "".join("[\n" + indent + "  " * (i + 1) for i in range(levels - 1))
    closes = "".join("\n" + indent + "  " * i + "]" for i in reversed(range(levels - 1)))
    return opens + "[]" + closes


@pytest.mark.parametrize(
    ("depth", "kind"),
    [
        pytest.param(600, "array", id="600-arrays"),
        pytest.param(GO_MAX_DEPTH, "array", id="go-max-arrays"),
        pytest.param(GO_MAX_DEPTH, "object", id="go-max-objects"),
    ],
)
def test_config_nested_to_go_max_depth_reads(depth: int, kind: str) -> None:
    vm = decode_config(deep_config(depth, kind))
    assert (vm.name, vm.ip, vm.mac) == ("web-1", "10.0.0.2", "02:00:00:00:00:01")
    assert list(vm.extra) == ["notes"]
    assert depth_of(vm.extra) == depth  # extra stands for the config's own object
    assert encode_json_value(vm.extra["notes"], compact=True) == nested(kind, depth - 1)


@pytest.mark.parametrize("kind", ["array", "object"])
def test_config_nested_past_go_max_depth_is_config_error(kind: str) -> None:
    data = deep_config(GO_MAX_DEPTH + 1, kind)
    with pytest.raises(ConfigError, match="nested too deeply, past Go's limit of 10000") as info:
        decode_config(data, PATH)
    # At the bracket that opens level 10001, counting the config's own object as level 1.
    opener = len(DEEP_HEAD) + (GO_MAX_DEPTH - 1) * (1 if kind == "array" else len('{"x":'))
    assert f"line 1 column {opener + 1}:" in str(info.value)
    assert data[opener : opener + 1] in (b"[", b"{")


def test_config_past_go_max_depth_fails_there_even_unterminated() -> None:
    # Go's scanner stops at the bracket that opens level 10001, before it sees the text cut short.
    head = b'{"x": '
    with pytest.raises(ConfigError, match=f"column {len(head) + GO_MAX_DEPTH}: nested too deeply"):
        decode_config(head + b"[" * GO_MAX_DEPTH)
    with pytest.raises(ConfigError, match=f"column {len(head) + GO_MAX_DEPTH}: Expecting value"):
        decode_config(head + b"[" * (GO_MAX_DEPTH - 1))


@pytest.mark.parametrize(
    ("depth", "readable"),
    [
        pytest.param(GO_MAX_DEPTH, True, id="go-max"),
        pytest.param(GO_MAX_DEPTH + 1, False, id="past"),
    ],
)
def test_fixture_extra_nested_to_go_max_depth(depth: int, readable: bool) -> None:
    # Levels: the config, fixtures, the fixture, then its unknown key's value.
    deep = nested("array", depth - 3)
    fixture = f'{{"host_path": "/h", "guest_path": "/g", "label": "FBFIX0", "deep": {deep}}}'
    data = f'{{"name": "web-1", "fixtures": [{fixture}], "ip": "10.0.0.2"}}'.encode()
    if not readable:
        with pytest.raises(ConfigError, match="nested too deeply"):
            decode_config(data)
        return
    vm = decode_config(data)
    assert vm.ip == "10.0.0.2"
    assert [(f.host_path, f.guest_path, f.label) for f in vm.fixtures] == [("/h", "/g", "FBFIX0")]
    assert depth_of(vm.fixtures[0].extra) == depth - 2
    assert encode_json_value(vm.fixtures[0].extra["deep"], compact=True) == deep


# Well past Python's recursion limit, but not at Go's limit: MarshalIndent's text grows with the
# square of the depth (2 spaces a level on each of 2 lines a level), 200 MB at 10000 levels.
@pytest.mark.parametrize("depth", [600, 2_500])
def test_deep_config_round_trips_byte_for_byte(depth: int) -> None:
    vm = decode_config(deep_config(depth))
    data = encode_config(vm)
    plain = copy.copy(vm)
    plain.extra = {}
    expected = encode_config(plain)[:-2] + b',\n  "notes": '
    expected += go_array_chain(depth - 1, "  ").encode() + b"\n}"
    assert data == expected
    assert encode_config(decode_config(data)) == data


@pytest.mark.parametrize("kind", ["array", "object"])
def test_json_value_nested_to_go_max_depth(kind: str) -> None:
    text = nested(kind, GO_MAX_DEPTH)
    value = decode_json_value(text)
    assert depth_of(value) == GO_MAX_DEPTH
    assert encode_json_value(value, compact=True) == text
    indented = encode_json_value(decode_json_value(nested(kind, 1_500)))
    assert encode_json_value(decode_json_value(indented)) == indented
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json_value(nested(kind, GO_MAX_DEPTH + 1))
    with pytest.raises(InvalidValueError, match="nested too deeply"):
        encode_json_value([value], compact=True)


def test_encode_rejects_extra_go_could_not_read_back() -> None:
    # A config is one level, so its extra values may hold 9999 more; a fixture's hold 9997.
    deepest: list[Any] = []
    for _ in range(GO_MAX_DEPTH - 2):
        deepest = [deepest]
    assert depth_of(deepest) == GO_MAX_DEPTH - 1
    fixture = Fixture("/h", "/g", "FBFIX0", {"deep": deepest})
    with pytest.raises(InvalidValueError, match="VM 'web-1': value nested too deeply"):
        encode_config(VM("web-1", fixtures=[fixture]))
    with pytest.raises(InvalidValueError, match="VM 'web-1': value nested too deeply"):
        encode_config(VM("web-1", extra={"x": [deepest]}))


TOKENS = ["[", "]", "{", "}", ",", ":", " ", '"', "\\", "-", "1.50", "-0", "1e400", "NaN", "nul"]


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text, valid or broken by a few token edits."""
    text = json.dumps(draw(json_values), indent=draw(st.sampled_from([None, 2])))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 1))
        text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at + cut :]
    return text


def read_with(read: Any, text: str) -> tuple[Any, ...]:
    try:
        value = gojson.to_python(read(text))
    except json.JSONDecodeError as exc:
        return ("not JSON", exc.msg, exc.pos)
    except gojson.Invalid as exc:
        return ("invalid", str(exc))
    try:
        return ("read", value, encode_json_value(value, compact=True))
    except InvalidValueError as exc:  # FAST reads 1e400 as inf, which no JSON can hold
        return ("read", repr(value), str(exc))


@fuzz
@given(json_texts())
def test_iterative_reader_reads_as_the_c_decoder_does(text: str) -> None:
    # Past Python's recursion limit only deepjson can read; below it, both must agree exactly.
    for decoder in (gojson.EXACT, gojson.FAST):
        expected = read_with(decoder.decode, text)
        assert read_with(lambda t, d=decoder: deepjson.decode(d, t), text) == expected


def test_deep_vms_compare_and_deepcopy() -> None:
    data = deep_config(GO_MAX_DEPTH)
    vm, same = decode_config(data), decode_config(data)
    other = decode_config(data.replace(b"[]", b"[1]"))
    assert vm == same
    assert vm != other
    clone = copy.deepcopy(vm)
    assert clone == vm
    assert clone.extra["notes"] is not vm.extra["notes"]
    assert clone._created_at_raw == vm._created_at_raw
    fixture = Fixture("/h", "/g", "FBFIX0", {"deep": clone.extra["notes"]})
    assert copy.deepcopy(fixture) == fixture != Fixture("/h", "/g", "FBFIX0", {"deep": []})


def test_deepcopy_keeps_shared_values_shared() -> None:
    shared: list[Any] = [1]
    vm = VM("web-1", extra={"a": shared, "b": shared, "c": [shared]})
    restore_created_at(vm, "2026-06-20T08:11:12.5+02:00")
    clone = copy.deepcopy(vm)
    assert clone == vm
    assert clone.extra["a"] is clone.extra["b"] is clone.extra["c"][0] is not shared
    assert clone._created_at_raw is not None
    assert clone._created_at_raw[1] is clone.created_at  # so the text read is written back
    twins = copy.deepcopy([vm, VM("web-2", extra=vm.extra)])
    assert twins[0].extra is twins[1].extra is not vm.extra
    assert created_at_text(clone) == "2026-06-20T08:11:12.5+02:00"


@fuzz
@given(json_values)
def test_encoder_lays_out_values_as_python_json_does(value: Any) -> None:
    # MarshalIndent's layout is json.dumps(indent=2)'s; only Go's HTML-safe escapes differ.
    go_escapes = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
    go_escapes |= str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})
    indented = json.dumps(value, indent=2, ensure_ascii=False).translate(go_escapes)
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(go_escapes)
    assert encode_json_value(value) == indented
    assert encode_json_value(value, compact=True) == compact


# --- a deep config in the store ------------------------------------------------------------


# Past Python's recursion limit, up to Go's: the index keeps extra as compact text, so a
# value 10000 levels deep stays ~20 KB (indented, it would be 200 MB).
@pytest.mark.parametrize("depth", [2_500, 10_000])
def test_store_indexes_a_deep_config(tmp_path: Path, depth: int) -> None:
    root = tmp_path / "fleetbox"
    member = root / "clusters" / "web" / "web-1"
    member.mkdir(parents=True)
    (member / "config.json").write_bytes(deep_config(depth))
    with Store.open(root) as store:
        assert store.list() == ["web-1"]
    with sqlite3.connect(root / "index.db") as conn:
        (stored,) = conn.execute("SELECT extra FROM members WHERE name = 'web-1'").fetchone()
    assert depth_of(decode_json_value(stored)) == depth
    with Store.open(root) as store:  # a new Store: its VMs come from the index rows
        (vm,) = store.vms()
        assert (vm.ip, vm.mac) == ("10.0.0.2", "02:00:00:00:00:01")
        assert encode_json_value(vm.extra["notes"], compact=True) == nested("array", depth - 1)
        assert store.free_ips("10.0.0.0/30") == []
        assert store.who_has("10.0.0.2") == store.who_has("02:00:00:00:00:01") == "web-1"
        with pytest.raises(IPConflictError):
            store.create(VM("web-2", ip="10.0.0.2"))
        with pytest.raises(MACConflictError):
            store.create(VM("web-2", mac="02:00:00:00:00:01"), subnet="10.0.0.0/29")
