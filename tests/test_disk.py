"""fleetbox_db.disk on real files, real processes and real flock; no mocks."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stress_helpers import DROP_PRIVILEGES, IS_ROOT, NOBODY

import fleetbox_db
from fleetbox_db.disk.files import (
    atomic_write,
    make_dirs,
    read_config_bytes,
    remove_member,
    remove_member_dir,
    remove_quietly,
)
from fleetbox_db.disk.locks import try_lock
from fleetbox_db.disk.safeopen import NotRegularFileError
from fleetbox_db.disk.scan import NOT_REGULAR, MemberDir, Scan, Signature, scan
from fleetbox_db.errors import LockedError, StorageRootError

REPO = Path(fleetbox_db.__file__).resolve().parent.parent
TEMP_NAME = re.compile(r"\.config\.json\.[0-9a-f]{16}\.tmp")

# Everything a child needs is imported before it may drop to nobody: /root (where the
# interpreter's stdlib lives here) is not searchable by nobody.
PRELUDE = """\
import json, os, signal, sys, time
from pathlib import Path
from fleetbox_db.disk import files, locks
from fleetbox_db.disk.scan import scan
from fleetbox_db.errors import FleetboxError
"""


def child(code: str, *args: str | Path, unprivileged: bool = False) -> list[str]:
    """Command line for a Python child running code; unprivileged drops root to nobody."""
    script = PRELUDE + (DROP_PRIVILEGES if unprivileged and IS_ROOT else "") + code
    return [sys.executable, "-c", script, *map(str, args)]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_child(code: str, *args: str | Path, cwd: Path, unprivileged: bool = False) -> object:
    """Run a child to completion and return the JSON it printed."""
    proc = subprocess.run(
        child(code, *args, unprivileged=unprivileged),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def existing_root(tmp_path: Path) -> Path:
    """An empty storage root, created with mode 0755: children dropped to user nobody, started
    with their cwd in it, can work in it by relative path."""
    path = tmp_path / "root"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


@pytest.fixture
def clusters(existing_root: Path) -> Path:
    path = existing_root / "clusters"
    path.mkdir()
    return path


def member(clusters: Path, cluster: str, name: str, config: bytes | None = b"{}") -> Path:
    path = clusters / cluster / name
    path.mkdir(parents=True)
    if config is not None:
        (path / "config.json").write_bytes(config)
    return path


def pairs(result: Scan) -> list[tuple[str, str]]:
    return [(m.cluster, m.name) for m in result.members]


# --- scan -------------------------------------------------------------------------------


def test_scan_is_cluster_major_in_byte_order(clusters: Path) -> None:
    names = [("web", "web-2"), ("db", "db"), ("web-0x", "web-0x"), ("web", "web-10")]
    names += [("web", "web-1")]
    for cluster, name in names:
        member(clusters, cluster, name)
    # A flat sort would put web-0x before web-1; Go lists cluster by cluster.
    assert pairs(scan(clusters)) == [
        ("db", "db"),
        ("web", "web-1"),
        ("web", "web-10"),
        ("web", "web-2"),
        ("web-0x", "web-0x"),
    ]


def test_scan_lists_configless_and_stray_dirs_and_ignores_files(clusters: Path) -> None:
    member(clusters, "dev", "dev")
    member(clusters, "web", "web-1", config=None)  # booting, or a failed first boot
    member(clusters, "foo", "bar")  # stray: VMDir("bar") would be clusters/bar/bar
    (clusters / "README").write_text("a file at the cluster level")
    (clusters / "web" / "notes.txt").write_text("a file at the member level")
    result = scan(clusters)
    assert pairs(result) == [("dev", "dev"), ("foo", "bar"), ("web", "web-1")]
    assert result.members[2] == MemberDir("web", "web-1", None, None)
    assert result.unreadable_clusters == []


def test_scan_skips_symlinked_cluster_and_member_dirs(clusters: Path, tmp_path: Path) -> None:
    member(clusters, "web", "web-1")
    outside = tmp_path / "outside"
    member(outside, "x", "x")
    (clusters / "linked").symlink_to(clusters / "web")
    (clusters / "escape").symlink_to(outside / "x")
    (clusters / "web" / "web-2").symlink_to(outside / "x" / "x")
    assert pairs(scan(clusters)) == [("web", "web-1")]


def test_scan_of_missing_clusters_dir_is_empty(existing_root: Path) -> None:
    assert scan(existing_root / "clusters") == Scan([], [])


def test_scan_of_clusters_that_is_a_file_names_the_path(existing_root: Path) -> None:
    (existing_root / "clusters").write_text("")
    with pytest.raises(StorageRootError) as info:
        scan(existing_root / "clusters")
    assert info.value.path == existing_root / "clusters"
    assert str(existing_root / "clusters") in str(info.value)


def test_scan_signature_matches_stat_and_read(clusters: Path, tmp_path: Path) -> None:
    path = member(clusters, "dev", "dev", b'{"name": "dev"}') / "config.json"
    target = tmp_path / "elsewhere.json"
    target.write_bytes(b'{"name": "db"}')
    (member(clusters, "db", "db", config=None) / "config.json").symlink_to(target)
    db, dev = scan(clusters).members
    assert dev.signature == Signature.of(os.stat(path)) == read_config_bytes(path)[1]
    assert dev.error is None
    # config.json is followed like Go's ReadFile: the target's signature.
    assert db.signature == Signature.of(os.stat(target))


def test_scan_config_that_is_a_dir_dangling_link_or_fifo(clusters: Path) -> None:
    (member(clusters, "a", "a", config=None) / "config.json").mkdir()
    (member(clusters, "b", "b", config=None) / "config.json").symlink_to("missing.json")
    os.mkfifo(member(clusters, "c", "c", config=None) / "config.json")
    a, b, c = scan(clusters).members
    assert a == MemberDir("a", "a", None, os.strerror(errno.EISDIR))
    assert b == MemberDir("b", "b", None, None)  # like Go's Exists: stat fails, so absent
    assert c == MemberDir("c", "c", None, NOT_REGULAR)


def test_scan_orders_undecodable_names_by_bytes(clusters: Path) -> None:
    top = os.fsencode(clusters)
    # U+FFFD is EF BF BD; the undecodable byte FF decodes to U+DCFF, which sorts *before*
    # U+FFFD as a code point but after it as bytes. Go sorts bytes.
    tree = {
        b"\xff": [b"m"],
        b"\xef\xbf\xbd": [b"m"],
        b"z": [b"b", b"a\xff", b"A", b"a\xef\xbf\xbd", b"a\xc3\xa9"],
    }
    for cluster, names in tree.items():
        for name in names:
            os.makedirs(top + b"/" + cluster + b"/" + name)
    result = scan(clusters)
    got = [(os.fsencode(m.cluster), os.fsencode(m.name)) for m in result.members]
    assert got == sorted((c, n) for c, names in tree.items() for n in names)
    assert got[-1] == (b"\xff", b"m")
    assert all(m.signature is None and m.error is None for m in result.members)


def test_scan_reports_unreadable_cluster_and_member_as_nobody(
    clusters: Path, existing_root: Path
) -> None:
    member(clusters, "db", "db")
    member(clusters, "db", "db-locked")
    member(clusters, "web", "web-1")
    member(clusters, "zz", "zz")
    (clusters / "db" / "db-locked").chmod(0o000)
    (clusters / "web").chmod(0o000)
    try:
        got = run_child(
            "s = scan(Path('clusters'))\n"
            "print(json.dumps([[list(m[:2]) + [m.signature is not None, m.error]"
            " for m in s.members], s.unreadable_clusters]))",
            cwd=existing_root,
            unprivileged=True,
        )
    finally:
        (clusters / "web").chmod(0o755)
        (clusters / "db" / "db-locked").chmod(0o755)
    assert got == [
        [
            ["db", "db", True, None],
            ["db", "db-locked", False, "Permission denied"],
            ["zz", "zz", True, None],
        ],
        ["web"],
    ]


def test_scan_of_unreadable_clusters_dir_raises_storage_root_error(
    clusters: Path, existing_root: Path
) -> None:
    member(clusters, "db", "db")
    clusters.chmod(0o000)
    try:
        got = run_child(
            "try:\n"
            "    scan(Path('clusters'))\n"
            "except FleetboxError as exc:\n"
            "    print(json.dumps([type(exc).__name__, str(exc.path), str(exc)]))",
            cwd=existing_root,
            unprivileged=True,
        )
    finally:
        clusters.chmod(0o755)
    assert isinstance(got, list)
    assert got[:2] == ["StorageRootError", "clusters"]
    assert "Permission denied" in got[2]


# --- read_config_bytes ------------------------------------------------------------------


def test_read_config_bytes_returns_bytes_and_their_signature(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"name": "dev"}')
    data, sig = read_config_bytes(path)
    assert data == b'{"name": "dev"}'
    assert sig == Signature.of(os.stat(path))
    assert sig.size == len(data)
    assert read_config_bytes(str(path)) == (data, sig)


@pytest.mark.parametrize("seen_regular", [False, True])
def test_read_config_bytes_errors(tmp_path: Path, seen_regular: bool) -> None:
    """seen_regular skips only the lstat: the open and fstat still refuse what is not a
    regular file (the scan's stat may be stale by the time the file is read)."""
    with pytest.raises(FileNotFoundError):
        read_config_bytes(tmp_path / "missing.json", seen_regular=seen_regular)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(NotRegularFileError, match="directory"):
        read_config_bytes(tmp_path / "dir.json", seen_regular=seen_regular)
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(OSError, match=NOT_REGULAR):  # and, above all, no hang
        read_config_bytes(tmp_path / "fifo.json", seen_regular=seen_regular)
    (tmp_path / "target.json").write_bytes(b"{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    with pytest.raises(NotRegularFileError, match="symlink"):
        read_config_bytes(tmp_path / "link.json", seen_regular=seen_regular)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux procfs")
def test_read_config_bytes_reads_past_a_size_that_is_too_small() -> None:
    """A regular file holding more than its fstat size (procfs, a file growing while read)
    is read to its end, not cut at that size."""
    data, sig = read_config_bytes("/proc/self/status")
    assert sig.size == 0
    assert data.startswith(b"Name:")
    assert data.endswith(b"\n")
    assert len(data.splitlines()) > 10


# --- atomic_write -----------------------------------------------------------------------


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_077")
def test_atomic_write_new_file_is_0644_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    atomic_write(path, b'{"name": "dev"}')
    assert path.read_bytes() == b'{"name": "dev"}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert entries(tmp_path) == ["config.json"]


@pytest.mark.parametrize("mode", [pytest.param(0o600, id="0600"), pytest.param(0o664, id="0664")])
@pytest.mark.usefixtures("umask_077")
def test_atomic_write_keeps_existing_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"old")
    path.chmod(mode)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert entries(tmp_path) == ["config.json"]


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another owner")
def test_atomic_write_as_root_keeps_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"old")
    os.chown(path, NOBODY, NOBODY)
    atomic_write(path, b"new")
    st = path.stat()
    assert (st.st_uid, st.st_gid, path.read_bytes()) == (NOBODY, NOBODY, b"new")


def test_atomic_write_of_same_bytes_changes_the_signature(tmp_path: Path) -> None:
    # Same size, maybe the same mtime tick: the new inode is what tells a scan it changed.
    path = tmp_path / "config.json"
    atomic_write(path, b"{}")
    before = Signature.of(path.stat())
    atomic_write(path, b"{}")
    assert Signature.of(path.stat()).ino != before.ino


def test_atomic_write_replaces_a_symlink_not_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_bytes(b"target")
    path = tmp_path / "config.json"
    path.symlink_to(target)
    atomic_write(path, b"new")
    assert not path.is_symlink()
    assert (path.read_bytes(), target.read_bytes()) == (b"new", b"target")


def test_atomic_write_into_missing_dir_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "gone" / "config.json", b"{}")
    assert entries(tmp_path) == []


def test_atomic_write_over_a_directory_removes_its_temp_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "config.json", b"{}")  # fails at the rename, after the write
    assert entries(tmp_path) == ["config.json"]


def test_atomic_write_failing_mid_write_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"old")
    # RLIMIT_FSIZE makes the write itself fail (EFBIG) after the temp file exists.
    got = run_child(
        "import resource\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    files.atomic_write(Path(sys.argv[1]), b'x' * 100_000)\n"
        "except OSError as exc:\n"
        "    print(json.dumps(exc.errno))",
        path,
        cwd=tmp_path,
    )
    assert got == errno.EFBIG
    assert path.read_bytes() == b"old"
    assert entries(tmp_path) == ["config.json"]


def test_atomic_write_in_read_only_dir_leaves_old_file(existing_root: Path) -> None:
    member_dir = existing_root / "m"
    member_dir.mkdir()
    (member_dir / "config.json").write_bytes(b"old")
    member_dir.chmod(0o555)
    try:
        got = run_child(
            "try:\n"
            "    files.atomic_write(Path('m/config.json'), b'new')\n"
            "except PermissionError as exc:\n"
            "    print(json.dumps(exc.errno))",
            cwd=existing_root,
            unprivileged=True,
        )
    finally:
        member_dir.chmod(0o755)
    assert got == errno.EACCES
    assert (member_dir / "config.json").read_bytes() == b"old"
    assert entries(member_dir) == ["config.json"]


def payload(name: str, pad: int) -> bytes:
    record = {"name": name, "mac": "12:8b:86:ed:f3:bc", "cpus": 2, "pad": "x" * pad}
    return json.dumps(record, indent=2).encode()


PAYLOADS = [payload("big", 512 * 1024), payload("small", 0), payload("mid", 20_000)]

# Forks writers from one warm process: a fresh interpreter per kill would spend the test's
# time importing the package. Each writer loops over the payloads until SIGKILLed.
WRITER = """\
path, payloads = Path(sys.argv[1]), [Path(p).read_bytes() for p in sys.argv[2:]]
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            files.atomic_write(path, payloads[0])
            print(os.getpid(), flush=True)
            i = 0
            while True:
                i += 1
                files.atomic_write(path, payloads[i % len(payloads)])
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
"""


def write_payload_files(tmp_path: Path) -> list[Path]:
    files = [tmp_path / f"payload-{i}.json" for i in range(len(PAYLOADS))]
    for file, data in zip(files, PAYLOADS, strict=True):
        file.write_bytes(data)
    return files


def test_atomic_write_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    seed = int(os.environ.get("FLEETBOX_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed: {seed} (rerun with FLEETBOX_CRASH_SEED={seed})")
    rng = random.Random(seed)
    member_dir = tmp_path / "m"
    member_dir.mkdir()
    path = member_dir / "config.json"
    files = write_payload_files(tmp_path)
    mid_write = 0
    with subprocess.Popen(
        child(WRITER, path, *files),
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        for kill in range(50):
            where = f"seed {seed}, kill {kill}"
            proc.stdin.write("go\n")
            proc.stdin.flush()
            pid = int(proc.stdout.readline())
            time.sleep(rng.uniform(0, 0.02))
            os.kill(pid, signal.SIGKILL)
            assert proc.stdout.readline() == f"{signal.SIGKILL}\n", where
            data = path.read_bytes()
            assert data in PAYLOADS, f"{where}: config.json is {len(data)} bytes, no payload"
            json.loads(data)
            left = [p for p in member_dir.iterdir() if p.name != "config.json"]
            assert len(left) <= 1, f"{where}: {left}"
            for temp in left:
                assert TEMP_NAME.fullmatch(temp.name), f"{where}: {temp.name}"
                temp.unlink()
                mid_write += 1
        proc.stdin.close()  # the writer's parent leaves its loop and exits
    print(f"{mid_write} of 50 kills left a temp file (killed mid-write)")
    assert mid_write > 0, f"seed {seed}: no kill landed mid-write; the test proved nothing"


def read_until_torn(path: Path, seconds: float) -> tuple[int, set[bytes], bytes | None]:
    """Read path in a tight loop: (reads, payloads seen, first torn content or None)."""
    reads, deadline = 0, time.monotonic() + seconds
    seen: set[bytes] = set()
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            data = f.read()
        reads += 1
        if data not in PAYLOADS:
            return reads, seen, data
        seen.add(data)
    return reads, seen, None


LOOP_WRITER = """\
path, payloads = Path(sys.argv[1]), [Path(p).read_bytes() for p in sys.argv[2:]]
i = 0
while True:
    i += 1
    files.atomic_write(path, payloads[i % len(payloads)])
"""
IN_PLACE_WRITER = LOOP_WRITER.replace(
    "    files.atomic_write(path, payloads[i % len(payloads)])",
    "    path.write_bytes(payloads[i % len(payloads)])  # Go's Save: truncate, then write",
)


@pytest.mark.parametrize(
    ("writer", "torn"),
    [
        pytest.param(LOOP_WRITER, False, id="atomic"),
        # The control: proves the reader loop can catch a torn file at all.
        pytest.param(IN_PLACE_WRITER, True, id="in-place-control"),
    ],
)
def test_concurrent_reader_never_sees_a_partial_file(
    tmp_path: Path, writer: str, torn: bool
) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(PAYLOADS[1])
    proc = subprocess.Popen(child(writer, path, *write_payload_files(tmp_path)), env=child_env())
    try:
        reads, seen, bad = read_until_torn(path, seconds=10 if torn else 1.5)
    finally:
        proc.kill()
        proc.wait()
    if torn:
        assert bad is not None, f"{reads} reads never caught the in-place writer"
    else:
        assert bad is None, f"read {len(bad or b'')} bytes after {reads} reads"
        assert len(seen) == len(PAYLOADS), "the writer never got going; nothing was tested"


# --- remove_member_dir, remove_member, remove_quietly, make_dirs -----------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the tree, with files that deleting a member must not touch."""
    path = tmp_path / "outside"
    (path / "deep").mkdir(parents=True)
    (path / "keep.txt").write_text("keep")
    (path / "deep" / "keep.raw").write_text("keep")
    return path


def outside_intact(outside: Path) -> bool:
    return (outside / "keep.txt").read_text() == (outside / "deep" / "keep.raw").read_text()


def test_rmtree_walks_by_fd_here() -> None:
    # The guarantee remove_member_dir leans on; False would mean a racy path-based walk.
    assert shutil.rmtree.avoids_symlink_attacks


def test_remove_member_dir_unlinks_symlinks_inside_without_following(
    clusters: Path, outside: Path
) -> None:
    m = member(clusters, "web", "web-1")
    (m / "fixtures").mkdir()
    (m / "fixtures" / "host").symlink_to(outside)
    (m / "to-file").symlink_to(outside / "keep.txt")
    (m / "kernel" / "cache" / "deeper").mkdir(parents=True)
    (m / "kernel" / "cache" / "deeper" / "vmlinuz").write_bytes(b"k")
    (m / "disk.raw").write_bytes(b"d")
    (m / "disk.raw").chmod(0o400)
    (m / "kernel" / "cache" / "ro").write_bytes(b"r")
    (m / "kernel" / "cache" / "ro").chmod(0o000)
    remove_member_dir(m)
    assert not m.exists()
    assert outside_intact(outside)
    assert entries(clusters / "web") == []


def test_remove_member_dir_that_is_a_symlink_removes_only_the_link(
    clusters: Path, outside: Path
) -> None:
    (clusters / "web").mkdir()
    (clusters / "web" / "web-1").symlink_to(outside)
    remove_member_dir(clusters / "web" / "web-1")
    assert entries(clusters / "web") == []
    assert outside_intact(outside)


def test_remove_member_dir_missing_raises_file_not_found(clusters: Path) -> None:
    with pytest.raises(FileNotFoundError):
        remove_member_dir(clusters / "web" / "web-1")


def test_remove_member_dir_tolerates_a_concurrent_remover(clusters: Path) -> None:
    m = member(clusters, "web", "web-1")
    for d in range(20):
        (m / f"d{d}").mkdir()
        for f in range(150):
            (m / f"d{d}" / f"f{f}").write_bytes(b"")
    code = (
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n"
        "    files.remove_member_dir(Path(sys.argv[1]))\n"
        "except FileNotFoundError as exc:\n"
        "    assert exc.filename == sys.argv[1], exc  # only the top may be absent\n"
    )
    with subprocess.Popen(
        child(code, m), env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        # Losing the race entirely is fine (absent top); losing it half-way must be too.
        absent_at = None
        try:
            remove_member_dir(m)
        except FileNotFoundError as exc:
            absent_at = exc.filename
        assert absent_at in (None, str(m))  # only the top may be found absent
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert not m.exists()


def test_remove_quietly(tmp_path: Path) -> None:
    sock = tmp_path / "ef260e9aa3c673af.sock"
    sock.write_bytes(b"")
    remove_quietly(sock)
    remove_quietly(sock)  # absent: fine
    assert entries(tmp_path) == []


def test_remove_member_rmdirs_the_cluster_only_when_empty(clusters: Path) -> None:
    member(clusters, "web", "web-1", config=None)
    member(clusters, "web", "web-2", config=None)
    assert remove_member(clusters, "web", "web-1") is True
    assert (clusters / "web").is_dir()
    assert remove_member(clusters, "web", "web-2") is True
    assert entries(clusters) == []
    assert remove_member(clusters, "web", "web-2") is False  # absent


def test_remove_member_never_enters_a_symlinked_cluster(clusters: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "web-1").mkdir(parents=True)
    (outside / "web-1" / "precious").write_bytes(b"keep")
    (clusters / "web").symlink_to(outside, target_is_directory=True)
    assert remove_member(clusters, "web", "web-1") is False
    assert (outside / "web-1" / "precious").read_bytes() == b"keep"


def test_make_dirs_is_mkdir_p_with_mode_and_idempotent(existing_root: Path) -> None:
    path = existing_root / "clusters" / "web" / "web-1"
    old = os.umask(0o022)
    try:
        make_dirs(path)
        make_dirs(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_make_dirs_over_a_file_names_the_path(existing_root: Path) -> None:
    (existing_root / "clusters").write_text("")
    with pytest.raises(StorageRootError) as info:
        make_dirs(existing_root / "clusters" / "web")
    assert info.value.path == existing_root / "clusters" / "web"
    assert str(existing_root / "clusters" / "web") in str(info.value)


def test_make_dirs_in_read_only_tree_raises_storage_root_error(existing_root: Path) -> None:
    existing_root.chmod(0o555)
    try:
        got = run_child(
            "try:\n"
            "    files.make_dirs(Path('clusters/web'))\n"
            "except FleetboxError as exc:\n"
            "    print(json.dumps([type(exc).__name__, str(exc.path), str(exc)]))",
            cwd=existing_root,
            unprivileged=True,
        )
    finally:
        existing_root.chmod(0o755)
    assert isinstance(got, list)
    assert got[:2] == ["StorageRootError", "clusters/web"]
    assert "Permission denied" in got[2]


# --- try_lock ---------------------------------------------------------------------------


def test_try_lock_twice_in_one_process_is_locked(clusters: Path) -> None:
    lock_path = member(clusters, "dev", "dev") / ".lock"
    first = try_lock(lock_path, "dev")
    with pytest.raises(LockedError) as info:
        try_lock(lock_path, "dev")
    assert (info.value.name, info.value.path) == ("dev", lock_path)
    assert "vm 'dev' is locked by another process or by this one" in str(info.value)
    first.unlock()
    first.unlock()  # idempotent
    assert not first.locked
    try_lock(lock_path, "dev").unlock()
    assert lock_path.exists()  # never deleted but by the member dir's removal
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o644


def test_try_lock_context_manager_releases_even_on_error(clusters: Path) -> None:
    lock_path = member(clusters, "dev", "dev") / ".lock"
    lock = try_lock(lock_path, "dev")
    assert lock.locked
    with pytest.raises(RuntimeError), lock:
        raise RuntimeError
    assert not lock.locked
    with try_lock(lock_path, "dev"):
        pass


def test_try_lock_without_member_dir_raises_file_not_found(clusters: Path) -> None:
    with pytest.raises(FileNotFoundError):
        try_lock(clusters / "dev" / "dev" / ".lock", "dev")
    assert entries(clusters) == []


def test_try_lock_does_not_follow_a_symlinked_lock_file(clusters: Path, tmp_path: Path) -> None:
    lock_path = member(clusters, "dev", "dev") / ".lock"
    lock_path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotRegularFileError, match="symlink"):
        try_lock(lock_path, "dev")
    assert not (tmp_path / "elsewhere").exists()


HOLDER = """\
lock = locks.try_lock(Path(sys.argv[1]), "dev")
print("locked", flush=True)
if sys.stdin.readline() == "unlock\\n":
    lock.unlock()
    print("unlocked", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize(
    "release",
    [
        pytest.param("unlock", id="unlock"),
        pytest.param("exit", id="exit-without-unlock"),
        pytest.param("sigkill", id="sigkill"),
    ],
)
def test_try_lock_across_processes(clusters: Path, release: str) -> None:
    lock_path = member(clusters, "dev", "dev") / ".lock"
    with subprocess.Popen(
        child(HOLDER, lock_path),
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        with pytest.raises(LockedError):
            try_lock(lock_path, "dev")
        if release == "unlock":
            proc.stdin.write("unlock\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "unlocked\n"
            try_lock(lock_path, "dev").unlock()  # free while the holder still runs
        elif release == "sigkill":
            proc.kill()
        proc.stdin.close()
        proc.wait(timeout=10)
    with try_lock(lock_path, "dev") as lock:
        assert lock.locked


def test_try_lock_held_here_is_locked_for_a_child(clusters: Path) -> None:
    lock_path = member(clusters, "dev", "dev") / ".lock"
    code = (
        "try:\n"
        "    locks.try_lock(Path(sys.argv[1]), 'dev')\n"
        "except FleetboxError as exc:\n"
        "    print(json.dumps(type(exc).__name__))\n"
        "else:\n"
        "    print(json.dumps('acquired'))"
    )
    with try_lock(lock_path, "dev"):
        assert run_child(code, lock_path, cwd=clusters) == "LockedError"
    assert run_child(code, lock_path, cwd=clusters) == "acquired"
