"""The fast config decoder is only an optimisation: on any text it either declines (the exact,
key-by-key reader then decides) or gives the very object the exact reader gives, down to
each object's __dict__ (field order, the remembered created_at text). Values only, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db.records import VM, Fixture
from fleetbox_db.rules import config
from fleetbox_db.rules.gojson import EXACT, FAST

fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["name", "mac", "cpus", "memory_mb", "disk_mb", "image", "created_at", "fixtures", "ip"]
strings = st.sampled_from(['"a"', '"web-1"', '"é"', '"\\u00e9"', '"a\\": b"', '""', '"\\ud800"'])
numbers = st.sampled_from(["0", "1", "-0", "4096", "1.5", "1e2", "9223372036854775808"])
times = st.sampled_from(
    [
        '"2024-03-01T00:00:04.000031676+01:00"',
        '"2026-06-20T08:11:12Z"',
        '"2026-06-20T8:11:12Z"',
        '"2026-02-30T08:11:12Z"',
        '"2026-06-20T08:11:12,5Z"',
    ]
)
fixture_objects = st.lists(
    st.tuples(st.sampled_from(["host_path", "guest_path", "label", "Label", "x"]), strings),
    max_size=4,
).map(lambda pairs: "{" + ", ".join(f'"{k}": {v}' for k, v in pairs) + "}")
fixture_lists = st.lists(st.one_of(fixture_objects, st.just("null")), max_size=3).map(
    lambda items: "[" + ", ".join(items) + "]"
)
values = st.one_of(strings, numbers, times, fixture_lists, st.sampled_from(["null", "true", "{}"]))
separators = st.sampled_from([": ", ":", " : ", ":\n "])
documents = st.lists(
    st.tuples(st.sampled_from([*KEYS, "NAME", "Cpus", "extra_key"]), separators, values),
    max_size=12,
).map(lambda items: "{" + ", ".join(f'"{k}"{sep}{v}' for k, sep, v in items) + "}")


def well_formed(draw: Any) -> str:
    """A config the way Go writes it, with the fields in any order."""
    pairs = {
        "name": draw(strings),
        "mac": draw(strings),
        "cpus": draw(numbers),
        "memory_mb": draw(numbers),
        "disk_mb": draw(numbers),
        "image": draw(strings),
        "created_at": draw(times),
        "fixtures": draw(fixture_lists),
        "ip": draw(strings),
    }
    keys = draw(st.permutations(list(pairs)))
    return "{\n" + ",\n".join(f'  "{k}": {pairs[k]}' for k in keys) + "\n}"


def deep(obj: Any) -> Any:
    """An object's whole state, __dict__ order included, for comparison."""
    if isinstance(obj, VM | Fixture):
        return [type(obj).__name__, [(k, deep(v)) for k, v in vars(obj).items()]]
    if isinstance(obj, list | tuple):
        return [deep(v) for v in obj]
    if isinstance(obj, dict):
        return [(k, deep(v)) for k, v in obj.items()]
    return (type(obj).__name__, obj)


def check(text: str) -> None:
    plain = "\\u" not in text
    try:
        fast = config._fast_vm(FAST.decode(text), plain)
    except (config._Slow, ValueError, json.JSONDecodeError, RecursionError):
        return  # declined: the exact reader decides alone
    exact = config._exact_vm(EXACT.decode(text))
    assert deep(fast) == deep(exact)
    assert config.encode_config(fast) == config.encode_config(exact)


@fuzz
@given(documents)
def test_fast_equals_exact_on_any_document(text: str) -> None:
    if "\\ufffd" not in text:  # never given to the fast path (the spelling is the exact's)
        check(text)


@fuzz
@given(st.data())
def test_fast_equals_exact_on_configs_go_writes(data: st.DataObject) -> None:
    check(well_formed(data.draw))


def test_duplicate_and_folded_keys_are_declined() -> None:
    for text in (
        '{"name": "a", "name": "b"}',
        '{"name": "a", "name" : "b"}',
        '{"Name": "a"}',
        '{"fixtures": [{"label": "x", "label": "y"}]}',
    ):
        try:
            config._fast_vm(FAST.decode(text), True)
        except config._Slow:
            continue
        raise AssertionError(f"the fast path decided {text!r}")
