"""Pure layout rules shared with the Go tool: cluster names, names, root, paths, hashes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetbox_db.errors import InvalidNameError, InvalidValueError, StorageRootError
from fleetbox_db.rules.layout import (
    MAX_NAME_BYTES,
    Layout,
    cluster_name,
    go_join,
    resolve_home,
    resolve_root,
    socket_hash,
    validate_name,
)

# --- cluster_name ------------------------------------------------------------------------

CLUSTER_CASES = [
    # (input, output); SPEC §3 and facts §2 (T = Go's TestClusterName, C = doc, D = derived)
    ("web-3", "web"),
    ("web-12", "web"),
    ("web-01", "web"),
    ("web-03", "web"),
    ("web-0", "web"),
    ("dev", "dev"),
    ("default", "default"),
    ("5", "5"),
    ("3", "3"),
    ("web-1-2", "web-1"),
    ("web-3-4", "web-3"),
    ("a-b-1", "a-b"),
    ("my-app-db-2", "my-app-db"),
    ("a-b-c", "a-b-c"),
    ("node-2024", "node"),
    ("web-", "web-"),
    ("web-1-", "web-1-"),
    ("web-x", "web-x"),
    ("web-1x", "web-1x"),
    ("web-x1", "web-x1"),
    ("web- 1", "web- 1"),
    ("web-\u0663", "web-\u0663"),  # Arabic-Indic three: str.isdigit() would strip it
    ("web-\uff11", "web-\uff11"),  # fullwidth one
    ("web-\u00b2", "web-\u00b2"),  # superscript two
    ("-5", "-5"),
    ("-3", "-3"),
    ("", ""),
    ("web--1", "web-"),
    ("--1", "-"),
    ("-", "-"),
    ("--", "--"),
    ("0-0", "0"),
    ("a-0-0", "a-0"),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [pytest.param(name, out, id=repr(name)) for name, out in CLUSTER_CASES],
)
def test_cluster_name_table(name: str, expected: str) -> None:
    assert cluster_name(name) == expected


_STRIPPABLE = re.compile(r"(.+)-([0-9]+)", re.DOTALL)

name_like = st.text(st.one_of(st.sampled_from("-0123456789ab\u0663"), st.characters()), max_size=20)


@given(name_like)
def test_cluster_name_strips_at_most_one_ascii_digit_group(name: str) -> None:
    result = cluster_name(name)
    assert name.startswith(result)
    if result != name:
        tail = name[len(result) :]
        assert result != ""
        assert tail[0] == "-"
        assert tail[1:] != ""
        assert all(ch in "0123456789" for ch in tail[1:])
    # Independent oracle: greedy prefix, so the split is at the last dash.
    match = _STRIPPABLE.fullmatch(name)
    assert result == (match.group(1) if match else name)


# --- validate_name -----------------------------------------------------------------------

REJECTED_NAMES = [
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="parent-escape"),
    pytest.param("a/b", id="slash"),
    pytest.param("/abs", id="absolute"),
    pytest.param("web/", id="trailing-slash"),
    pytest.param("x\x00y", id="nul"),
    pytest.param("\x00", id="only-nul"),
    pytest.param("a" * 256, id="256-ascii-bytes"),
    pytest.param("\u00e9" * 128, id="256-bytes-2-byte-chars"),
    pytest.param("a" + "\u20ac" * 85, id="256-bytes-3-byte-chars"),
    pytest.param("\U0001f600" * 64, id="256-bytes-4-byte-chars"),
    pytest.param("\ud800", id="unencodable-surrogate"),
    pytest.param("\udcff" * 256, id="256-undecodable-bytes"),
    # Decision beyond SPEC §3: these would put the member dir outside clusters/.
    pytest.param("..-1", id="cluster-dotdot"),
    pytest.param(".-3", id="cluster-dot"),
]


@pytest.mark.parametrize("name", REJECTED_NAMES)
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert isinstance(info.value, ValueError)
    assert info.value.name == name
    message = str(info.value)
    assert "invalid VM name" in message
    assert "must be non-empty" in message  # says what is allowed


README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_names_every_refused_name_with_its_reason() -> None:
    """The README's list of refused names covers each rule validate_name enforces."""
    text = README.read_text()
    assert "### Names" in text
    section = text.split("### Names", 1)[1].split("\n#", 1)[0]
    for refused in ("empty", "`.` or `..`", "`/`", "NUL", "255 bytes", "`.-1`", "`..-2`"):
        assert refused in section, refused
    assert "outside `clusters/`" in section  # and why the cluster rule exists


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(b"web-1", id="bytes"),
        pytest.param(1, id="int"),
        pytest.param(Path("web-1"), id="path"),
    ],
)
def test_validate_name_rejects_non_str(value: object) -> None:
    with pytest.raises(InvalidNameError, match="expected a str"):
        validate_name(value)  # type: ignore[arg-type]


def test_validate_name_message_is_bounded_for_huge_names() -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name("x" * 1_000_000)
    assert len(str(info.value)) < 400
    assert "1000000 bytes" in str(info.value)


ACCEPTED_NAMES = [
    pytest.param("web-1", id="plain"),
    pytest.param("dev", id="solo"),
    pytest.param("-5", id="leading-dash"),
    pytest.param("--1", id="cluster-dash"),
    pytest.param("...", id="three-dots"),
    pytest.param(".hidden", id="dotfile"),
    pytest.param("..x-1", id="dotdot-prefix"),
    pytest.param("caf\u00e9-\u6771\u4eac", id="unicode"),
    pytest.param("web-\u0663", id="unicode-digit"),
    pytest.param("a" * 255, id="255-ascii-bytes"),
    pytest.param("\u00e9" * 127 + "a", id="255-bytes-multibyte"),
    pytest.param("\U0001f600" * 63 + "abc", id="255-bytes-emoji"),
    # Allowed: a directory can have them and the Go tool may have made one.
    pytest.param("my vm", id="space"),
    pytest.param("line\nbreak", id="newline"),
    pytest.param("tab\there", id="tab"),
    # Bytes that are not UTF-8, as os.fsdecode gives them: Go's mkdir can make such a name,
    # and the index keeps it as raw bytes.
    pytest.param("raw-\udcff", id="undecodable-byte-via-surrogateescape"),
    pytest.param("\udcff" * 255, id="255-undecodable-bytes"),
]


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) is name


def test_max_name_bytes() -> None:
    assert MAX_NAME_BYTES == 255


# --- socket hash -------------------------------------------------------------------------

HASH_VECTORS = [
    ("dev", "ef260e9aa3c673af"),
    ("web-1", "c4719afa76fa448b"),
    ("web-2", "612f7a0edd33d5c1"),
    ("test-vm", "e097de2badae2b23"),
    ("default", "37a8eec1ce19687d"),
    ("", "e3b0c44298fc1c14"),
]


@pytest.mark.parametrize(
    ("name", "digest"), [pytest.param(n, h, id=repr(n)) for n, h in HASH_VECTORS]
)
def test_socket_hash_vectors(name: str, digest: str) -> None:
    assert socket_hash(name) == digest


def test_socket_hash_of_undecodable_name_hashes_raw_bytes() -> None:
    assert socket_hash("a\udcff") == "8dd06b5ab6b59425"  # sha256(b"a\xff")[:16]


# --- Layout ------------------------------------------------------------------------------


@pytest.fixture
def missing_root(tmp_path: Path) -> Path:
    root = tmp_path / "does-not-exist" / ".fleetbox"
    assert not root.exists()
    return root


def test_layout_fixed_paths(missing_root: Path) -> None:
    layout = Layout(missing_root)
    r = missing_root
    assert layout.root == r
    assert layout.base_dir == r
    assert layout.clusters_dir == r / "clusters"
    assert layout.images_dir == r / "images"
    assert layout.bin_dir == r / "bin"
    assert layout.network_state_dir == r / "networks"
    assert layout.run_dir == r / "run"
    assert layout.ssh_key_path == r / "id_ed25519"
    assert layout.index_path == r / "index.db"
    assert layout.index_lock_path == r / "index.lock"
    assert not missing_root.parent.exists()


def test_layout_member_paths(missing_root: Path) -> None:
    layout = Layout(str(missing_root))  # a str root is accepted too
    r = missing_root
    m = r / "clusters" / "web" / "web-2"
    assert layout.vm_dir("web-2") == m
    assert layout.config_path("web-2") == m / "config.json"
    assert layout.disk_path("web-2") == m / "disk.raw"
    assert layout.seed_path("web-2") == m / "seed.iso"
    assert layout.efi_path("web-2") == m / "efi.nvram"
    assert layout.pidfile_path("web-2") == m / "pid"
    assert layout.serial_log_path("web-2") == m / "serial.log"
    assert layout.fixture_path("web-2", 0) == m / "fixture-0.img"
    assert layout.fixture_path("web-2", 1) == m / "fixture-1.img"  # TestFixturePath
    assert layout.fixture_path("web-2", 10) == m / "fixture-10.img"
    assert layout.lock_path("web-2") == m / ".lock"
    assert layout.socket_path("web-2") == r / "run" / "612f7a0edd33d5c1.sock"
    assert layout.control_socket_path("web-2") == r / "run" / "612f7a0edd33d5c1.ctl"
    assert not missing_root.parent.exists()


def test_layout_go_store_tests(tmp_path: Path) -> None:
    """TestStoreBasic and TestStorePaths from the Go store."""
    layout = Layout(tmp_path)
    assert layout.vm_dir("test") == tmp_path / "clusters" / "test" / "test"
    m = tmp_path / "clusters" / "test-vm" / "test-vm"
    assert layout.vm_dir("test-vm") == m
    assert layout.disk_path("test-vm") == m / "disk.raw"
    assert layout.seed_path("test-vm") == m / "seed.iso"
    assert layout.efi_path("test-vm") == m / "efi.nvram"
    assert layout.pidfile_path("test-vm") == m / "pid"
    assert layout.serial_log_path("test-vm") == m / "serial.log"
    assert layout.socket_path("test-vm") == tmp_path / "run" / "e097de2badae2b23.sock"
    assert layout.disk_path("web-2") == tmp_path / "clusters" / "web" / "web-2" / "disk.raw"
    assert layout.socket_path("dev") == tmp_path / "run" / "ef260e9aa3c673af.sock"
    assert layout.vm_dir("node-2024").parent == layout.vm_dir("node").parent
    assert list(tmp_path.iterdir()) == []


def test_layout_keeps_relative_root_verbatim() -> None:
    layout = Layout("rel/root")
    assert layout.vm_dir("dev") == Path("rel/root/clusters/dev/dev")
    assert not layout.root.is_absolute()


# Go's path/filepath tests (TestJoin, TestClean): Join drops empty elements, then cleans.
GO_JOIN_CASES = [
    ((), ""),
    (("",), ""),
    (("", ""), ""),
    (("a",), "a"),
    (("a", "b"), "a/b"),
    (("a", ""), "a"),
    (("", "b"), "b"),
    (("/", "a"), "/a"),
    (("/", "a/b"), "/a/b"),
    (("/", ""), "/"),
    (("/a", "b"), "/a/b"),
    (("a/", "b"), "a/b"),
    (("a/", ""), "a"),
    (("//", "a"), "/a"),
    (("", "."), "."),
    ((".", "clusters"), "clusters"),
    (("abc/",), "abc"),
    (("//abc//",), "/abc"),
    (("abc//def//ghi",), "abc/def/ghi"),
    (("/./abc/def",), "/abc/def"),
    (("abc/.",), "abc"),
    (("abc/def/ghi/../jkl",), "abc/def/jkl"),
    (("abc/def/../..",), "."),
    (("/abc/def/../../..",), "/"),
    (("abc/def/../../..",), ".."),
    (("abc/def/../../../ghi/jkl/../../../mno",), "../../mno"),
    (("/../abc",), "/abc"),
    (("abc/./../def",), "def"),
    (("abc/../../././../def",), "../../def"),
    (("/x/lnk/../root", "clusters"), "/x/root/clusters"),
]


@pytest.mark.parametrize(("parts", "expected"), GO_JOIN_CASES, ids=repr)
def test_go_join_is_filepath_join(parts: tuple[str, ...], expected: str) -> None:
    assert go_join(*parts) == expected


# Roots as given, and the clusters/ Go's filepath.Join(root, "clusters") makes of each.
SPELLED_ROOTS = [
    pytest.param("/x/lnk/../root", "/x/root/clusters", id="dotdot-after-a-link"),
    pytest.param("/x/./root/", "/x/root/clusters", id="dot-and-trailing-slash"),
    pytest.param("//x", "/x/clusters", id="two-leading-slashes"),
    pytest.param("/..", "/clusters", id="above-the-top"),
    pytest.param("/", "/clusters", id="the-top"),
    pytest.param("rel/../root", "root/clusters", id="relative-dotdot"),
    pytest.param("../up", "../up/clusters", id="relative-up"),
    pytest.param(".", "clusters", id="dot"),
    pytest.param("", "clusters", id="empty"),
]


@pytest.mark.parametrize(("given", "clusters"), SPELLED_ROOTS)
def test_paths_from_the_root_are_cleaned_as_go_joins_them(given: str, clusters: str) -> None:
    layout = Layout(given)
    assert layout.root == Path(given)  # the root itself stays as given, as Go's BaseDir
    assert layout.base_dir == Path(given)
    assert layout.clusters_dir == Path(clusters)
    top = Path(clusters).parent
    assert layout.vm_dir("web-2") == Path(clusters) / "web" / "web-2"
    assert layout.config_path("web-2") == Path(clusters) / "web" / "web-2" / "config.json"
    assert layout.socket_path("web-2") == top / "run" / "612f7a0edd33d5c1.sock"
    assert layout.index_path == top / "index.db"


ROOT_LEAVES: list[tuple[Callable[[Layout], Path], tuple[str, ...]]] = [
    (lambda layout: layout.clusters_dir, ("clusters",)),
    (lambda layout: layout.images_dir, ("images",)),
    (lambda layout: layout.bin_dir, ("bin",)),
    (lambda layout: layout.network_state_dir, ("networks",)),
    (lambda layout: layout.run_dir, ("run",)),
    (lambda layout: layout.ssh_key_path, ("id_ed25519",)),
    (lambda layout: layout.index_path, ("index.db",)),
    (lambda layout: layout.index_lock_path, ("index.lock",)),
    (lambda layout: layout.vm_dir("web-2"), ("clusters", "web", "web-2")),
    (lambda layout: layout.config_path("web-2"), ("clusters", "web", "web-2", "config.json")),
    (lambda layout: layout.disk_path("web-2"), ("clusters", "web", "web-2", "disk.raw")),
    (lambda layout: layout.seed_path("web-2"), ("clusters", "web", "web-2", "seed.iso")),
    (lambda layout: layout.efi_path("web-2"), ("clusters", "web", "web-2", "efi.nvram")),
    (lambda layout: layout.pidfile_path("web-2"), ("clusters", "web", "web-2", "pid")),
    (lambda layout: layout.serial_log_path("web-2"), ("clusters", "web", "web-2", "serial.log")),
    (lambda layout: layout.lock_path("web-2"), ("clusters", "web", "web-2", ".lock")),
    (lambda layout: layout.fixture_path("web-2", 3), ("clusters", "web", "web-2", "fixture-3.img")),
    (lambda layout: layout.socket_path("web-2"), ("run", "612f7a0edd33d5c1.sock")),
    (lambda layout: layout.control_socket_path("web-2"), ("run", "612f7a0edd33d5c1.ctl")),
]

root_spellings = st.lists(st.sampled_from(["", ".", "..", "a", "lnk", "b.c", "/"]), max_size=6).map(
    "".join
) | st.lists(st.sampled_from(["a", ".", "..", "", "lnk"]), max_size=5).map("/".join)


@given(root_spellings)
def test_every_derived_path_is_go_join_of_its_parts(root: str) -> None:
    layout = Layout(root)
    for accessor, parts in ROOT_LEAVES:
        assert accessor(layout) == Path(go_join(root, *parts)), parts


NAME_ACCESSORS: list[Callable[[Layout, str], Path]] = [
    Layout.vm_dir,
    Layout.config_path,
    Layout.disk_path,
    Layout.seed_path,
    Layout.efi_path,
    Layout.pidfile_path,
    Layout.serial_log_path,
    Layout.lock_path,
    Layout.socket_path,
    Layout.control_socket_path,
    lambda layout, name: layout.fixture_path(name, 0),
]


@pytest.mark.parametrize("accessor", NAME_ACCESSORS)
@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "x\x00y", "a" * 256])
def test_layout_accessors_validate_names(
    accessor: Callable[[Layout, str], Path], name: str, missing_root: Path
) -> None:
    with pytest.raises(InvalidNameError):
        accessor(Layout(missing_root), name)
    assert not missing_root.parent.exists()


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(1.0, id="float"),
        pytest.param("1", id="str"),
        pytest.param(None, id="none"),
    ],
)
def test_fixture_path_rejects_bad_index(index: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="fixture index"):
        Layout(tmp_path).fixture_path("web-1", index)  # type: ignore[arg-type]


def test_fixture_path_checks_name_before_index(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        Layout(tmp_path).fixture_path("", -1)


def test_layout_is_read_only_but_subclassable(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with pytest.raises(AttributeError):
        layout.root = Path("/elsewhere")  # type: ignore[misc]

    class Sub(Layout):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.extra = 1

    sub = Sub(tmp_path)
    assert sub.extra == 1
    assert sub.vm_dir("dev") == tmp_path / "clusters" / "dev" / "dev"
    assert repr(sub) == f"Sub({str(tmp_path)!r})"


SUN_PATH_MAX = 104
LONG_BASE = "/Users/some.long.username/.fleetbox"


def test_socket_paths_fit_sun_path() -> None:
    """TestSocketPathUnderSunPathLimit from the Go store."""
    layout = Layout(LONG_BASE)
    name = "testvmclusterconnectivity-node-1"
    sock = len(bytes(layout.socket_path(name)))
    ctl = len(bytes(layout.control_socket_path(name)))
    assert sock < SUN_PATH_MAX
    assert ctl < SUN_PATH_MAX
    # The facts file says "each is 61"; ".ctl" is one byte shorter than ".sock".
    assert (sock, ctl) == (61, 60)


def _is_valid(name: str) -> bool:
    try:
        validate_name(name)
    except InvalidNameError:
        return False
    return True


valid_names = st.one_of(
    st.text(min_size=1, max_size=60),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    st.text(st.sampled_from("ab.-/0\x00"), min_size=1, max_size=8),
    st.sampled_from(["a" * 255, "\U0001f600" * 63 + "abc", "raw-\udcff"]),
).filter(_is_valid)


@given(valid_names)
def test_socket_path_length_does_not_depend_on_name(name: str) -> None:
    layout = Layout(LONG_BASE)
    assert len(bytes(layout.socket_path(name))) == 61
    assert len(bytes(layout.control_socket_path(name))) == 60


@given(valid_names)
def test_valid_names_stay_inside_their_cluster_dir(name: str) -> None:
    layout = Layout("/r")
    vm_dir = layout.vm_dir(name)
    assert vm_dir.parent.parent == Path("/r/clusters")
    assert vm_dir.name == name
    assert vm_dir.parent.name == cluster_name(name)


# --- root resolution ---------------------------------------------------------------------


def _lookup_alice(user: str) -> str | None:
    return "/home/alice" if user == "alice" else None


def _lookup_raises(user: str) -> str | None:
    raise KeyError(user)


def _lookup_empty(user: str) -> str | None:
    return ""


def _lookup_none(user: str) -> str | None:
    return None


def _lookup_must_not_run(user: str) -> str | None:
    raise AssertionError("lookup must not be called")


FALLBACK = {"HOME": "/fallback/home"}


@pytest.mark.parametrize(
    ("environ", "euid", "lookup", "expected"),
    [
        pytest.param(
            {**FALLBACK, "SUDO_USER": "alice"},
            0,
            _lookup_alice,
            "/home/alice",
            id="root-with-sudo-user",
        ),
        pytest.param(
            {**FALLBACK, "SUDO_USER": "alice"},
            1000,
            _lookup_must_not_run,
            "/fallback/home",
            id="sudo-only-honoured-for-root",
        ),
        pytest.param(
            {**FALLBACK, "SUDO_USER": ""},
            0,
            _lookup_must_not_run,
            "/fallback/home",
            id="root-empty-sudo-user",
        ),
        pytest.param(
            FALLBACK, 0, _lookup_must_not_run, "/fallback/home", id="root-without-sudo-user"
        ),
        pytest.param(
            {**FALLBACK, "SUDO_USER": "alice"},
            0,
            _lookup_raises,
            "/fallback/home",
            id="lookup-raises",
        ),
        pytest.param(
            {**FALLBACK, "SUDO_USER": "alice"},
            0,
            _lookup_empty,
            "/fallback/home",
            id="lookup-empty-home",
        ),
        pytest.param(
            {**FALLBACK, "SUDO_USER": "alice"},
            0,
            _lookup_none,
            "/fallback/home",
            id="lookup-unknown-user",
        ),
        pytest.param(
            {"SUDO_USER": "alice"}, 0, _lookup_alice, "/home/alice", id="sudo-home-needs-no-HOME"
        ),
    ],
)
def test_resolve_home(
    environ: dict[str, str], euid: int, lookup: Callable[[str], str | None], expected: str
) -> None:
    assert resolve_home(environ, euid, lookup) == expected


@pytest.mark.parametrize(
    ("environ", "euid"),
    [
        pytest.param({}, 1000, id="home-unset"),
        pytest.param({"HOME": ""}, 1000, id="home-empty"),
        pytest.param({"SUDO_USER": "alice"}, 0, id="lookup-fails-and-home-unset"),
    ],
)
def test_resolve_home_without_home_is_an_error(environ: dict[str, str], euid: int) -> None:
    with pytest.raises(StorageRootError, match=r"\$HOME"):
        resolve_home(environ, euid, _lookup_none)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("/srv/branded", Path("/srv/branded"), id="absolute"),
        pytest.param("rel/root", Path("rel/root"), id="relative-not-absolutised"),
        pytest.param("~/fb", Path("~/fb"), id="tilde-not-expanded"),
        pytest.param("/srv/lnk/../fb", Path("/srv/lnk/../fb"), id="dotdot-kept"),
    ],
)
def test_resolve_root_honours_fleetbox_home(value: str, expected: Path) -> None:
    environ = {"FLEETBOX_HOME": value, "HOME": "/home/bob", "SUDO_USER": "alice"}
    assert resolve_root(environ, 0, _lookup_must_not_run) == expected


def test_resolve_root_fleetbox_home_needs_no_home() -> None:
    assert resolve_root({"FLEETBOX_HOME": "/x"}, 1000, _lookup_must_not_run) == Path("/x")


def test_resolve_root_empty_fleetbox_home_counts_as_unset() -> None:
    """TestNewDefaultUnchanged from the Go store."""
    environ = {"FLEETBOX_HOME": "", "HOME": "/home/bob"}
    assert resolve_root(environ, 1000, _lookup_must_not_run) == Path("/home/bob/.fleetbox")


@pytest.mark.parametrize(
    ("home", "expected"),
    [
        pytest.param("/home/lnk/../bob", "/home/bob/.fleetbox", id="dotdot"),
        pytest.param("/home/bob/", "/home/bob/.fleetbox", id="trailing-slash"),
        pytest.param("//home/./bob", "/home/bob/.fleetbox", id="slashes-and-dot"),
    ],
)
def test_resolve_root_joins_home_as_go_does(home: str, expected: str) -> None:
    """filepath.Join(home, ".fleetbox") cleans; only FLEETBOX_HOME is taken verbatim."""
    environ = {"HOME": home}
    assert str(resolve_root(environ, 1000, _lookup_must_not_run)) == expected


def test_resolve_root_under_sudo() -> None:
    environ = {"HOME": "/root", "SUDO_USER": "alice"}
    assert resolve_root(environ, 0, _lookup_alice) == Path("/home/alice/.fleetbox")
    assert resolve_root(environ, 0, _lookup_raises) == Path("/root/.fleetbox")


def test_resolve_root_without_home_raises() -> None:
    with pytest.raises(StorageRootError):
        resolve_root({}, 1000, _lookup_none)


def test_resolve_root_defaults_to_process_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETBOX_HOME", str(tmp_path / "branded"))
    assert resolve_root() == tmp_path / "branded"
    monkeypatch.delenv("FLEETBOX_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert resolve_root() == tmp_path / ".fleetbox"
    assert list(tmp_path.iterdir()) == []


def test_resolve_root_default_lookup_of_unknown_user_falls_back(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "SUDO_USER": "no-such-user-fleetbox-test"}
    assert resolve_root(environ, 0) == tmp_path / ".fleetbox"
