"""The landing sensor and the ingest run do work in proportion to what is new.

With 10,000 files already in the ledger, a tick looks up and reads none of them and
its cursor stays small; one new file among them starts one run naming one file;
a file copied in with an old modification time is still seen (its ctime is new);
a cursor of the first format (every file's hash) is converted without reading or
requesting anything again. Which files a tick or a run opens is watched with
inotify on the landing folder (every open of an entry is an event; nothing is
read without one).
Real embedded PostgreSQL, real sensor evaluations, real loads; no mocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from ingestion import ingest_directory
from ingestion.discovery import SETTLE_NS
from orchestration.defs.ingestion.sensors import MAX_INGEST_RETRIES, LandingCursor, landing_sensor
from orchestration.resources import LandingFolder, PlatformDatabase
from tests.ingest_helpers import fetch, good_deal, write_csv

FILES = 10_000
CURSOR_BOUND = 1024  # bytes: the cursor must not grow with the files ever landed
HEADER = "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"

_IN_OPEN, _IN_Q_OVERFLOW = 0x020, 0x4000


class FolderWatch:
    """Names of the entries of one folder that were opened (inotify on the folder)."""

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0:
            pytest.skip("inotify is not available")
        wd = libc.inotify_add_watch(self._fd, os.fsencode(folder), _IN_OPEN)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def opened(self) -> set[str]:
        """Entries opened since the last call (not the folder itself, for its listing)."""
        names: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return names
            pos = 0
            while pos < len(data):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", data, pos)
                assert not mask & _IN_Q_OVERFLOW, "inotify lost events: too many opens"
                name = data[pos + 16 : pos + 16 + size].rstrip(b"\0")
                if name:
                    names.add(os.fsdecode(name))
                pos += 16 + size

    def close(self) -> None:
        os.close(self._fd)


@contextmanager
def watching(folder: Path) -> Iterator[FolderWatch]:
    watch = FolderWatch(folder)
    try:
        yield watch
    finally:
        watch.close()


def deal_file(path: Path, deal_id: str) -> Path:
    path.write_text(f"{HEADER}{deal_id},org_1,10,USD,won,2026-02-01,2026-02-02,2026-02-02\n")
    return path


def wait_until_settled(folder: Path) -> None:
    """Until every entry's ctime is older than SETTLE_NS: the state after any real
    landing once a few seconds have passed (the watermark only moves past such times)."""
    newest = max(p.lstat().st_ctime_ns for p in folder.iterdir())
    while time.time_ns() - SETTLE_NS <= newest:
        time.sleep(0.05)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def landed(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 deals files, each in the ledger as loaded (rows inserted set-based, as
    a load right after landing leaves them: without trusted times, by content hash)."""
    folder = tmp_path_factory.mktemp("landing_10k")
    names = [f"deals_{i:05d}.csv" for i in range(FILES)]
    paths = [deal_file(folder / name, f"s{i}") for i, name in enumerate(names)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into raw.ingest_batches (file_name, file_path, entity, file_format,"
            " content_hash, file_size, started_at, finished_at, outcome)"
            " select name, path, 'deals', 'csv', hash, size, now(), now(), 'loaded'"
            " from unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])"
            " as landed(name, path, hash, size)",
            [names, [str(p) for p in paths], [sha256(p) for p in paths],
             [p.stat().st_size for p in paths]],
        )  # fmt: skip
    wait_until_settled(folder)
    return folder


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def resources(db_url: str, landed: Path) -> dict:
    return {
        "database": PlatformDatabase(url=db_url),
        "landing": LandingFolder(path=str(landed)),
    }


def tick(
    instance: dg.DagsterInstance, resources: dict, cursor: str | None, folder: Path
) -> tuple[dg.SkipReason | dg.RunRequest, str | None, set[str]]:
    """One real sensor evaluation: its result, the cursor it leaves, the entries it opened."""
    context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    with watching(folder) as watch:
        result = landing_sensor(context)
        opened = watch.opened()
    assert isinstance(result, dg.SkipReason | dg.RunRequest), result
    return result, context.cursor, opened


@pytest.fixture(scope="module")
def settled_cursor(instance: dg.DagsterInstance, resources: dict, landed: Path) -> str:
    """The cursor after a first tick, which had no cursor: every entry looked at once."""
    result, cursor, opened = tick(instance, resources, None, landed)
    assert isinstance(result, dg.SkipReason), result
    # The ledger rows hold no trusted times: the first tick hashes every file, once.
    assert f"({FILES:,} listed, {FILES:,} checked, {FILES:,} read)" in result.skip_message
    assert len(opened) == FILES
    assert cursor is not None
    return cursor


def test_a_quiet_tick_reads_nothing_and_its_cursor_stays_small(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    result, cursor, opened = tick(instance, resources, settled_cursor, landed)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        f"no new or changed landing files ({FILES:,} listed, 0 checked, 0 read)"
    )
    assert opened == set()
    assert cursor is not None and len(cursor.encode()) < CURSOR_BOUND
    state = LandingCursor.parse(cursor)
    newest = max(p.lstat().st_ctime_ns for p in landed.iterdir())
    assert state.pending == {} and state.watermark_ns in (newest, newest - 1)


def test_one_new_file_among_10000_is_one_run_naming_one_file(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    new = deal_file(landed / "deals_new.csv", "n1")
    try:
        result, cursor, opened = tick(instance, resources, settled_cursor, landed)
        assert isinstance(result, dg.RunRequest)
        assert result.tags["landing_files"] == "1"
        assert result.job_name == "ingest_and_attribute"
        expected = hashlib.sha256(f"deals_new.csv:{sha256(new)}".encode()).hexdigest()
        assert result.tags["landing_hash"] == expected
        assert opened == {"deals_new.csv"}  # only the new file was read
        assert cursor is not None and len(cursor.encode()) < CURSOR_BOUND
        assert set(LandingCursor.parse(cursor).pending) == {"deals_new.csv"}
        # Not loaded yet: the next tick asks again, with the same run key (no second run).
        again, _, opened_again = tick(instance, resources, cursor, landed)
        assert isinstance(again, dg.RunRequest) and again.run_key == result.run_key
        assert opened_again <= {"deals_new.csv"}
    finally:
        new.unlink()


def test_a_copy_with_an_old_modification_time_is_seen(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    """`cp -p` / `rsync -a` keep the source's mtime; the copy's ctime is still new."""
    source = landed.parent / "deals_archived.csv"
    deal_file(source, "old1")
    year_2001 = 978_307_200 * 10**9
    os.utime(source, ns=(year_2001, year_2001))
    copy = Path(shutil.copy2(source, landed / "deals_archived.csv"))
    try:
        assert copy.stat().st_mtime_ns == year_2001
        result, _, opened = tick(instance, resources, settled_cursor, landed)
        assert isinstance(result, dg.RunRequest) and result.tags["landing_files"] == "1"
        assert opened == {"deals_archived.csv"}
    finally:
        copy.unlink()


def test_special_entries_are_requested_without_being_opened(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    """A FIFO and a folder land: the run they start records their refusal."""
    pipe, folder = landed / "deals_pipe.csv", landed / "deals_dir"
    os.mkfifo(pipe)
    folder.mkdir()
    try:
        result, _, opened = tick(instance, resources, settled_cursor, landed)
        assert isinstance(result, dg.RunRequest) and result.tags["landing_files"] == "2"
        assert opened == set()  # a FIFO's open would block; a folder is never read
    finally:
        pipe.unlink()
        folder.rmdir()


def test_a_first_format_cursor_is_converted_without_reading_or_requesting_again(
    instance: dg.DagsterInstance, resources: dict, landed: Path
) -> None:
    """A deployment upgrades with the old cursor (every file's hash) in storage."""
    waiting = deal_file(landed / "deals_waiting.csv", "w1")
    try:
        old = {
            p.name: [p.stat().st_size, p.stat().st_mtime_ns, sha256(p), "deals"]
            for p in landed.iterdir()
        }
        old_cursor = json.dumps(old)
        # What the first-format sensor requested for the file it saw unloaded.
        old_key = hashlib.sha256(f"deals_waiting.csv:{old['deals_waiting.csv'][2]}".encode())
        result, cursor, opened = tick(instance, resources, old_cursor, landed)
        assert isinstance(result, dg.RunRequest)
        # The same run key: Dagster starts no second run for a request already made.
        assert result.run_key == f"{old_key.hexdigest()}-0"
        assert result.tags["landing_files"] == "1"
        assert opened == set()  # every hash came from the old cursor
        assert cursor is not None and len(cursor.encode()) < CURSOR_BOUND < len(old_cursor)
        assert set(LandingCursor.parse(cursor).pending) == {"deals_waiting.csv"}
    finally:
        waiting.unlink()


@dg.op
def _stand_in() -> None:
    """An op for the failed runs recorded below (the sensor reads only their tags and status)."""


@dg.job
def failed_landing_run() -> None:
    _stand_in()


def test_a_failed_load_is_retried_a_few_times_then_left(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    """The file stays in the cursor until the ledger has it: each failure, a new run key."""
    failing = deal_file(landed / "deals_failing.csv", "f1")
    try:
        result, cursor, _ = tick(instance, resources, settled_cursor, landed)
        assert isinstance(result, dg.RunRequest)
        files_hash = result.tags["landing_hash"]
        for failures in range(1, MAX_INGEST_RETRIES + 2):
            instance.create_run_for_job(
                failed_landing_run, tags=result.tags, status=dg.DagsterRunStatus.FAILURE
            )
            after, cursor, _ = tick(instance, resources, cursor, landed)
            if failures <= MAX_INGEST_RETRIES:
                assert isinstance(after, dg.RunRequest)
                assert after.run_key == f"{files_hash}-{failures}"
        assert isinstance(after, dg.SkipReason)
        assert after.skip_message.startswith(f"ingest of these files failed {failures} times")
        assert "deals_failing.csv" in LandingCursor.parse(cursor).pending
    finally:
        failing.unlink()


def test_a_ledger_restored_from_a_backup_is_noticed(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str, db_url: str
) -> None:
    """The newest batch is gone (restored from an older backup): its file loads again."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "create temporary table gone as select * from raw.ingest_batches"
            " where batch_id = (select max(batch_id) from raw.ingest_batches)"
        )
        ((name,),) = conn.execute("select file_name from gone").fetchall()
        conn.execute("delete from raw.ingest_batches where batch_id in (select batch_id from gone)")
        try:
            result, cursor, _ = tick(instance, resources, settled_cursor, landed)
            assert isinstance(result, dg.RunRequest) and result.tags["landing_files"] == "1"
            assert set(LandingCursor.parse(cursor).pending) == {name}
        finally:
            conn.execute(
                "insert into raw.ingest_batches overriding system value select * from gone"
            )


def test_a_file_relanded_with_new_content_and_its_old_mtime_is_requested(
    instance: dg.DagsterInstance, resources: dict, landed: Path, settled_cursor: str
) -> None:
    """Same name, same size, mtime set back: the ctime still says it changed."""
    path = landed / "deals_00042.csv"
    before = path.stat()
    deal_file(path, "s99")  # same length as "s42"
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    result, _, opened = tick(instance, resources, settled_cursor, landed)
    assert isinstance(result, dg.RunRequest) and result.tags["landing_files"] == "1"
    assert opened == {"deals_00042.csv"}


def test_the_ingest_run_skips_unchanged_files_unread_and_says_so_in_one_line(
    fresh_db_url: str, landing: Path
) -> None:
    """A file's size and times go to the ledger when they can be trusted (older than
    SETTLE_NS when read); a later run skips the unchanged file without opening it."""
    early = [write_csv(landing / f"deals_{n}.csv", [good_deal(deal_id=n)]) for n in ("a", "b")]
    wait_until_settled(landing)
    late = write_csv(landing / "deals_c.csv", [good_deal(deal_id="c")])
    first = ingest_directory(fresh_db_url, landing)
    assert [f.status for f in first.files] == ["loaded"] * 3
    times = dict(fetch(fresh_db_url, "select file_name, file_ctime_ns from raw.ingest_batches"))
    assert times == {p.name: p.stat().st_ctime_ns for p in early} | {late.name: None}

    wait_until_settled(landing)
    with watching(landing) as watch:
        second = ingest_directory(fresh_db_url, landing)
        assert watch.opened() == {late.name}  # hashed once more: its times are now kept
    assert [f.status for f in second.files] == ["skipped"] * 3
    assert "  3 files already loaded, skipped" in second.lines()
    assert not any("deals_" in line for line in second.lines())  # no line per file

    with watching(landing) as watch:
        third = ingest_directory(fresh_db_url, landing)
        assert watch.opened() == set()
    assert [f.message for f in third.files] == [f"already loaded as batch {b}" for b in (1, 2, 3)]

    # Re-landed: new content of the same size, the old mtime put back. Loaded again.
    before = late.stat()
    write_csv(late, [good_deal(deal_id="d")])
    os.utime(late, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert late.stat().st_size == before.st_size
    fourth = ingest_directory(fresh_db_url, landing)
    assert {f.file_name: f.status for f in fourth.files} == {
        "deals_a.csv": "skipped", "deals_b.csv": "skipped", "deals_c.csv": "loaded",
    }  # fmt: skip
