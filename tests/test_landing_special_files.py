"""Entries of the landing folder that are not regular files: never opened, refused, recorded.

A symbolic link (inside or outside the folder), a directory, a named pipe, a
socket or a device file is recorded in raw.ingest_batches as refused, with what
it is (and for a link where it points), and its ledger hash does not come from
reading it. "Never opened" is checked with inotify on the targets (an open of
any kind is an event), and a FIFO — whose open would block — must not hang the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ingestion import ingest_directory
from ingestion.discovery import discover
from ingestion.loader import FileResult, ledger_hash, load_file, open_staging
from ingestion.readers import NotRegularFile, file_sha256, open_regular
from ingestion.service import IngestReport
from tests.ingest_helpers import fetch, good_deal, write_csv

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a POSIX file system")

SECRET = b"root:$6$not-a-real-hash:19000:0:99999:7:::\n"
TIMEOUT_S = 60

# --- inotify: which inodes were opened -----------------------------------------------
_IN_ACCESS, _IN_OPEN = 0x001, 0x020
_IN_NONBLOCK = os.O_NONBLOCK


class OpenWatch:
    """Counts opens and reads of some paths (inotify IN_OPEN | IN_ACCESS), Linux only."""

    def __init__(self, *paths: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(_IN_NONBLOCK)
        if self._fd < 0:
            pytest.skip("inotify is not available")
        self._names: dict[int, Path] = {}
        for path in paths:
            wd = libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_OPEN | _IN_ACCESS)
            assert wd >= 0, (path, os.strerror(ctypes.get_errno()))
            self._names[wd] = path

    def opened(self) -> list[Path]:
        """Paths opened or read since the last call."""
        seen = []
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return seen
            pos = 0
            while pos < len(data):
                wd, _mask, _cookie, size = struct.unpack_from("iIII", data, pos)
                seen.append(self._names[wd])
                pos += 16 + size

    def close(self) -> None:
        os.close(self._fd)


@contextmanager
def watching(*paths: Path) -> Iterator[OpenWatch]:
    watch = OpenWatch(*paths)
    try:
        yield watch
    finally:
        watch.close()


def within(seconds: float, work: Callable[[], object]) -> object:
    """`work()` in a thread; fails the test (instead of hanging) if it blocks."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for {seconds} s (a FIFO was opened?)"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def ingest(url: str, landing: Path) -> IngestReport:
    report = within(TIMEOUT_S, lambda: ingest_directory(url, landing))
    assert isinstance(report, IngestReport)
    assert report.ok, report.errors
    return report


def by_name(report: IngestReport) -> dict[str, FileResult]:
    return {f.file_name: f for f in report.files}


def ledger(url: str, file_name: str) -> list[tuple]:
    return fetch(
        url,
        "select outcome, content_hash, file_size, error_message, rows_read, entity"
        " from raw.ingest_batches where file_name = %s",
        [file_name],
    )


# --- fixtures ----------------------------------------------------------------------
@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the landing folder that must never be read (think /etc/shadow)."""
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def test_the_watch_sees_an_open(tmp_path: Path) -> None:
    """The instrument of the tests below works: an open and a read are seen."""
    target = tmp_path / "seen"
    target.write_bytes(b"x")
    with watching(target) as watch:
        assert watch.opened() == []
        target.read_bytes()
        assert target in watch.opened()


def test_symlink_outside_the_folder_is_refused_unread(
    db_url: str, landing: Path, secret: Path
) -> None:
    link = landing / "deals_evil.csv"
    link.symlink_to(secret)
    with watching(secret) as watch:
        report = ingest(db_url, landing)
        assert watch.opened() == [], "the link's target was opened"
    result = by_name(report)["deals_evil.csv"]
    assert result.status == "refused"
    assert result.message == (
        f"deals_evil.csv: is a symbolic link to {str(secret)!r} (outside the landing folder);"
        " links are never followed, so nothing was read: put the file itself in the folder"
    )
    ((outcome, content_hash, size, error, rows_read, entity),) = ledger(db_url, "deals_evil.csv")
    assert (outcome, size, error, rows_read, entity) == ("refused", 0, result.message, 0, "deals")
    assert content_hash != hashlib.sha256(SECRET).hexdigest()
    assert content_hash == "unread:symlink:" + hashlib.sha256(os.fsencode(str(secret))).hexdigest()
    assert fetch(db_url, "select count(*) from raw.deals") == [(0,)]


def test_symlink_inside_the_folder_is_refused_and_its_target_loads_once(
    fresh_db_url: str, landing: Path
) -> None:
    write_csv(landing / "deals_real.csv", [good_deal(deal_id="d1"), good_deal(deal_id="d2")])
    (landing / "deals_alias.csv").symlink_to("deals_real.csv")  # relative, stays inside
    (landing / "deals_dangling.csv").symlink_to("deals_gone.csv")
    (landing / "deals_loop.csv").symlink_to("deals_loop.csv")
    with watching(landing / "deals_real.csv") as watch:
        report = ingest(fresh_db_url, landing)
        opened = watch.opened()
    results = by_name(report)
    assert results["deals_real.csv"].status == "loaded"
    assert opened and set(opened) == {landing / "deals_real.csv"}  # read as itself
    for name, target in [
        ("deals_alias.csv", "deals_real.csv"),
        ("deals_dangling.csv", "deals_gone.csv"),
    ]:
        assert results[name].status == "refused"
        assert results[name].message == (
            f"{name}: is a symbolic link to {target!r} (inside the landing folder, where a file"
            " loads under its own name); links are never followed, so nothing was read:"
            " put the file itself in the folder"
        )
    assert results["deals_loop.csv"].status == "refused"
    assert "is a symbolic link to 'deals_loop.csv'" in (results["deals_loop.csv"].message or "")
    # The rows of the target are there once, from its own batch.
    assert fetch(fresh_db_url, "select deal_id from raw.deals order by 1") == [("d1",), ("d2",)]
    assert fetch(
        fresh_db_url,
        "select file_name, outcome from raw.ingest_batches order by file_name",
    ) == [
        ("deals_alias.csv", "refused"),
        ("deals_dangling.csv", "refused"),
        ("deals_loop.csv", "refused"),
        ("deals_real.csv", "loaded"),
    ]


def test_fifo_is_refused_without_blocking(db_url: str, landing: Path) -> None:
    os.mkfifo(landing / "touchpoints_pipe.csv")
    os.mkfifo(landing / "notes")  # no entity prefix: refused for what it is all the same
    with watching(landing / "touchpoints_pipe.csv", landing / "notes") as watch:
        report = ingest(db_url, landing)
        assert watch.opened() == []
    results = by_name(report)
    for name in ("touchpoints_pipe.csv", "notes"):
        assert results[name].status == "refused"
        assert results[name].message == (
            f"{name}: is a named pipe (FIFO), not a regular file; it was not opened"
        )
        ((outcome, content_hash, size, _, _, _),) = ledger(db_url, name)
        assert (outcome, content_hash, size) == ("refused", "unread:fifo", 0)


def test_directory_is_refused_and_not_listed(db_url: str, landing: Path) -> None:
    sub = landing / "deals_folder.csv"
    sub.mkdir()
    write_csv(sub / "deals_inner.csv", [good_deal(deal_id="inner")])
    (landing / "archive").mkdir()
    with watching(sub, landing / "archive") as watch:
        report = ingest(db_url, landing)
        assert watch.opened() == []  # not even listed
    results = by_name(report)
    for name in ("deals_folder.csv", "archive"):
        assert results[name].status == "refused"
        assert results[name].message == (
            f"{name}: is a directory; folders inside the landing folder are not read"
        )
        assert ledger(db_url, name)[0][:3] == ("refused", "unread:directory", 0)
    assert "deals_inner.csv" not in results
    assert fetch(db_url, "select count(*) from raw.deals where deal_id = 'inner'") == [(0,)]


def test_socket_is_refused(db_url: str, landing: Path) -> None:
    path = landing / "deals.sock"
    if len(os.fsencode(path)) >= 100:
        pytest.skip("path too long for a unix socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        report = ingest(db_url, landing)
    finally:
        server.close()
    result = by_name(report)["deals.sock"]
    assert result.status == "refused"
    assert result.message == "deals.sock: is a socket, not a regular file; it was not opened"
    assert ledger(db_url, "deals.sock")[0][:3] == ("refused", "unread:socket", 0)


def test_device_file_is_refused_unopened(db_url: str, landing: Path) -> None:
    path = landing / "deals_null.csv"
    try:  # the null device's numbers; needs root (CAP_MKNOD)
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device file needs CAP_MKNOD")
    with watching(path) as watch:
        report = ingest(db_url, landing)
        assert watch.opened() == []
    result = by_name(report)["deals_null.csv"]
    assert result.status == "refused"
    assert result.message == (
        "deals_null.csv: is a character device, not a regular file; it was not opened"
    )
    assert ledger(db_url, "deals_null.csv")[0][:3] == ("refused", "unread:character-device", 0)


def test_refusals_are_recorded_once(fresh_db_url: str, landing: Path, secret: Path) -> None:
    (landing / "deals_evil.csv").symlink_to(secret)
    os.mkfifo(landing / "deals_pipe.csv")
    (landing / "deals_dir").mkdir()
    first = ingest(fresh_db_url, landing)
    assert first.count("refused") == 3
    second = ingest(fresh_db_url, landing)
    assert {f.file_name: f.status for f in second.files} == {
        "deals_evil.csv": "skipped",
        "deals_pipe.csv": "skipped",
        "deals_dir": "skipped",
    }
    assert all(f.message and f.message.startswith("already refused as batch") for f in second.files)
    assert fetch(fresh_db_url, "select count(*) from raw.ingest_batches") == [(3,)]
    # A link pointed elsewhere is a new entry: recorded again, with its new target.
    (landing / "deals_evil.csv").unlink()
    (landing / "deals_evil.csv").symlink_to("/dev/null")
    third = ingest(fresh_db_url, landing)
    assert by_name(third)["deals_evil.csv"].status == "refused"
    assert "'/dev/null'" in (by_name(third)["deals_evil.csv"].message or "")
    assert fetch(fresh_db_url, "select count(*) from raw.ingest_batches") == [(4,)]


def test_hidden_entries_are_still_ignored(db_url: str, landing: Path, secret: Path) -> None:
    (landing / ".deals_link.csv").symlink_to(secret)
    os.mkfifo(landing / ".deals_pipe.csv")
    (landing / ".deals_partial.csv").write_text("deal_id\n")
    (landing / ".git").mkdir()
    with watching(secret, landing / ".deals_pipe.csv") as watch:
        report = ingest(db_url, landing)
        assert watch.opened() == []
    assert report.files == []
    assert fetch(db_url, "select count(*) from raw.ingest_batches where file_name like '.%%'") == [
        (0,)
    ]


def test_default_discovery_lists_regular_files_only(landing: Path, secret: Path) -> None:
    """What a caller that opens the files it is given (the landing sensor) sees."""
    write_csv(landing / "deals_a.csv", [good_deal()])
    (landing / "deals_link.csv").symlink_to(secret)
    (landing / "deals_inside.csv").symlink_to("deals_a.csv")
    os.mkfifo(landing / "deals_pipe.csv")
    (landing / "deals_dir").mkdir()
    assert [f.name for f in discover(landing)] == ["deals_a.csv"]
    everything = {f.name: f for f in discover(landing, special_entries=True)}
    assert sorted(everything) == [
        "deals_a.csv",
        "deals_dir",
        "deals_inside.csv",
        "deals_link.csv",
        "deals_pipe.csv",
    ]
    assert everything["deals_a.csv"].unread is None
    kinds = {name: f.unread.kind for name, f in everything.items() if f.unread is not None}
    assert kinds == {
        "deals_dir": "directory",
        "deals_inside.csv": "symlink",
        "deals_link.csv": "symlink",
        "deals_pipe.csv": "fifo",
    }
    with watching(secret, landing / "deals_pipe.csv") as watch:
        hashes = {
            name: within(TIMEOUT_S, lambda f=f: ledger_hash(f)) for name, f in everything.items()
        }
        assert watch.opened() == []
    assert hashes["deals_a.csv"] == file_sha256(landing / "deals_a.csv")
    assert hashes["deals_pipe.csv"] == "unread:fifo"
    assert hashes["deals_dir"] == "unread:directory"
    assert str(hashes["deals_link.csv"]).startswith("unread:symlink:")


# --- a file replaced between discovery and opening ----------------------------------
def _swap(path: Path, make: Callable[[Path], None]) -> None:
    """Atomically replace `path` by what `make` creates (rename over it)."""
    temp = path.with_name(".swap-" + path.name)
    make(temp)
    os.replace(temp, path)


@pytest.mark.parametrize("replacement", ["symlink", "fifo", "directory"])
def test_file_swapped_after_discovery_is_refused_unread(
    fresh_db_url: str, landing: Path, secret: Path, replacement: str
) -> None:
    path = landing / "deals_swap.csv"
    write_csv(path, [good_deal()])
    (found,) = discover(landing, special_entries=True)
    assert found.unread is None  # a regular file when it was listed
    if replacement == "symlink":
        _swap(path, lambda p: p.symlink_to(secret))
    elif replacement == "fifo":
        _swap(path, os.mkfifo)
    else:
        path.unlink()
        path.mkdir()
    with watching(secret) as watch, psycopg.connect(fresh_db_url, autocommit=True) as conn:
        with open_staging(conn) as staging:
            result = within(TIMEOUT_S, lambda: load_file(conn, found, staging))
        assert watch.opened() == []
    assert isinstance(result, FileResult)
    assert result.status == "refused"
    expected = {
        "symlink": "is a symbolic link to",
        "fifo": "is a named pipe (FIFO)",
        "directory": "is a directory",
    }[replacement]
    assert (result.message or "").startswith(f"deals_swap.csv: {expected}")
    ((outcome, content_hash, size, _, _, _),) = ledger(fresh_db_url, "deals_swap.csv")
    assert outcome == "refused" and content_hash.startswith("unread:") and size == 0
    assert fetch(fresh_db_url, "select count(*) from raw.deals") == [(0,)]


def test_name_replaced_after_hashing_loads_what_was_hashed(
    fresh_db_url: str, landing: Path, secret: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One descriptor is hashed and loaded: a name swapped for a link to a secret
    right after the hash (injected there) changes nothing that is read."""
    import ingestion.loader as loader

    path = landing / "deals_once.csv"
    write_csv(path, [good_deal(deal_id="first")])
    first_hash = file_sha256(path)
    real_sha256_of = loader.sha256_of

    def hash_then_swap(handle):  # type: ignore[no-untyped-def]
        digest = real_sha256_of(handle)
        _swap(path, lambda p: p.symlink_to(secret))
        return digest

    monkeypatch.setattr(loader, "sha256_of", hash_then_swap)
    (found,) = discover(landing)
    with watching(secret) as watch, psycopg.connect(fresh_db_url, autocommit=True) as conn:
        result = load_file(conn, found)
        assert watch.opened() == []
    assert path.is_symlink()  # the swap happened
    assert result.status == "loaded", result.message
    assert fetch(fresh_db_url, "select deal_id from raw.deals") == [("first",)]
    assert ledger(fresh_db_url, "deals_once.csv")[0][:2] == ("loaded", first_hash)


# --- the opener itself -------------------------------------------------------------
def test_open_regular_refuses_what_is_not_a_regular_file(landing: Path, secret: Path) -> None:
    (landing / "link").symlink_to(secret)
    os.mkfifo(landing / "pipe")
    (landing / "dir").mkdir()
    for name, kind in [("link", stat.S_ISLNK), ("pipe", stat.S_ISFIFO), ("dir", stat.S_ISDIR)]:
        with pytest.raises(NotRegularFile) as caught:
            within(TIMEOUT_S, lambda name=name: open_regular(landing / name))
        assert kind(caught.value.mode), name
        with pytest.raises(NotRegularFile):
            within(TIMEOUT_S, lambda name=name: file_sha256(landing / name))
    with open_regular(secret) as handle:  # a regular file opens and reads
        assert handle.read() == SECRET
    with pytest.raises(FileNotFoundError) as missing:
        open_regular(landing / "absent")
    assert missing.value.errno == errno.ENOENT
