"""A scan reuses an earlier scan's tuples where they are equal, and only there.

The usual answer finds disk as the index last saw it: reusing the recorded tuples makes
comparing the two an identity check per member and makes no tuple to free. The earlier
scan is only a hint: whatever it holds (stale, reordered, forged), the scan is the one a
scan without it gives.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox_db import Store
from fleetbox_db.disk.scan import MemberDir, Signature, scan
from fleetbox_db.records import MemberState

# Names that sort alike in str and byte order, and some that do not (undecodable bytes
# come back as surrogate escapes, which scan orders by their bytes).
NAMES = st.sampled_from(["a", "b", "ab", "b-1", "z", "é", "\udcff", "\udcfe-1", "A"])


def plant(clusters: Path, layout: dict[str, dict[str, str | None]]) -> None:
    """Create *layout*: cluster -> member -> config bytes' text, None for no config."""
    for cluster, members in layout.items():
        for member, text in members.items():
            directory = clusters / cluster / member
            directory.mkdir(parents=True, exist_ok=True)
            if text is not None:
                (directory / "config.json").write_text(text)


LAYOUTS = st.dictionaries(
    NAMES, st.dictionaries(NAMES, st.none() | st.sampled_from(["{}", "{ }", "x" * 40])), max_size=4
)


def changed(clusters: Path, seed: int) -> None:
    """Change the planted tree in a few of the ways a writer would."""
    members = sorted(p for p in clusters.glob("*/*") if p.is_dir())
    for i, member in enumerate(members):
        config = member / "config.json"
        action = (seed + i) % 5
        if action == 0 and config.exists():
            config.write_text(config.read_text() + " ")  # rewritten: new size and times
        elif action == 1 and config.exists():
            os.replace(config, member / "gone.json")  # configless now
        elif action == 2:
            (clusters / member.parent.name / f"{member.name}-new").mkdir()
        elif action == 3 and not config.exists():
            config.mkdir()  # a directory where the config goes


def forged(members: list[MemberDir], how: int) -> list[MemberDir]:
    """An earlier scan that is wrong in one way: reordered, shifted, or with signatures
    and errors that look like disk's but are not."""
    if how == 0:
        return members[::-1]
    if how == 1:
        return members[1:]
    out = []
    for m in members:
        if m.signature is None:
            out.append(MemberDir(m.cluster, m.name, None, None if m.error else "forged"))
        else:
            s = m.signature
            out.append(m._replace(signature=Signature(s.ino, s.size, s.mtime_ns, s.ctime_ns + 1)))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=LAYOUTS, seed=st.integers(0, 4), how=st.integers(0, 3))
def test_a_scan_with_an_earlier_one_is_the_scan_without(
    layout: dict[str, dict[str, str | None]], seed: int, how: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clusters = Path(tmp) / "clusters"
        clusters.mkdir()
        plant(clusters, layout)
        before = scan(clusters).members
        changed(clusters, seed)
        earlier = forged(before, how) if how < 3 else before
        hinted, plain = scan(clusters, earlier), scan(clusters)
        assert hinted == plain
        assert [type(m) for m in hinted.members] == [MemberDir] * len(plain.members)
        assert all(
            type(m.signature) is Signature for m in hinted.members if m.signature is not None
        )
        kept = {id(m) for m in earlier}
        for member in hinted.members:
            if id(member) in kept:  # reused only where every field is disk's now
                assert member == plain.members[hinted.members.index(member)]


def test_an_unchanged_tree_is_made_of_the_earlier_tuples(tmp_path: Path) -> None:
    clusters = tmp_path / "clusters"
    plant(clusters, {"web": {"web-1": "{}", "web-2": None}, "db": {"db-1": "{}", "db-2": "{}"}})
    earlier = scan(clusters).members
    again = scan(clusters, earlier).members
    signed = [m for m in earlier if m.signature is not None]
    assert [m for m in again if m.signature is not None] == signed
    assert all(a is b for a, b in zip(again, earlier, strict=True) if b.signature is not None)


def test_a_rewrite_in_place_is_not_hidden_by_an_earlier_tuple(tmp_path: Path) -> None:
    clusters = tmp_path / "clusters"
    plant(clusters, {"web": {"web-1": "{}", "web-2": "{}"}})
    earlier = scan(clusters).members
    config = clusters / "web" / "web-2" / "config.json"
    st_before = config.stat()
    with open(config, "r+") as f:  # same size, same inode: only the times differ
        f.write("{}")
    os.utime(config, ns=(st_before.st_atime_ns, st_before.st_mtime_ns + 1))
    again = scan(clusters, earlier).members
    assert again[0] is earlier[0]
    assert again[1] is not earlier[1]
    assert again[1].signature == Signature.of(config.stat())


def test_another_clusters_tuple_is_not_reused_for_a_hard_linked_config(tmp_path: Path) -> None:
    """A hard link gives two members the same signature; a forged earlier scan that puts
    one where the other belongs must not move it to the wrong cluster."""
    clusters = tmp_path / "clusters"
    plant(clusters, {"a": {"p": "{}", "x": "{}", "z": "{}"}, "b": {"x": None}})
    os.link(clusters / "a" / "x" / "config.json", clusters / "b" / "x" / "config.json")
    a_p, a_x, a_z, b_x = scan(clusters).members
    assert a_x.signature == b_x.signature
    again = scan(clusters, [a_p, b_x, a_z]).members
    assert again == [a_p, a_x, a_z, b_x]
    assert again[1] is not b_x


def test_a_store_answers_from_reused_tuples_and_sees_every_change(tmp_path: Path) -> None:
    root = tmp_path / "root"
    plant(root / "clusters", {"web": {"web-1": '{"name": "web-1"}', "web-2": None}})
    with Store.open(root) as store:
        assert store.list() == ["web-1", "web-2"]
        assert store.list() == ["web-1", "web-2"]
        (root / "clusters" / "web" / "web-0").mkdir()
        (root / "clusters" / "web" / "web-1" / "config.json").unlink()
        assert store.list() == ["web-0", "web-1", "web-2"]
        states = {e.name: e.state for e in store.entries()}
        assert states == {
            "web-0": MemberState.CONFIGLESS,
            "web-1": MemberState.CONFIGLESS,
            "web-2": MemberState.CONFIGLESS,
        }
