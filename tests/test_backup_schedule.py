"""Automated backups (orchestration/defs/platform/backups.py): the Dagster job writes a
backup with retention, the restore drill proves it in a scratch database, and fails
loudly when the backup is missing, too old, damaged or incomplete — on a real
PostgreSQL, through real Dagster runs, without touching the live database."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from ingestion import ingest_directory
from orchestration.defs.platform import backups
from orchestration.defs.platform.alerts import failed_check_alert
from orchestration.defs.platform.backups import (
    BACKUP_ASSET,
    DRILL_CHECK,
    backup_cron,
    max_backup_age,
)
from orchestration.resources import AlertWebhook, PlatformDatabase
from orchestration.run import pooled_storage
from platform_core.backup import (
    DRILL_DATABASE,
    MANIFEST,
    backup_name,
    read_manifest,
    restore_drill,
    rotated_backup,
)
from platform_core.database import DatabaseError
from platform_core.settings import Settings, project_root
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.test_backup import table_digests

BACKUP_RUN = "database_backup"
DRILL_RUN = "backup_restore_drill"
DRILL_KEY = dg.AssetCheckKey(BACKUP_ASSET.key, DRILL_CHECK)


@pytest.fixture(scope="module")
def env(
    db_url: str, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A deployment with raw data loaded, Dagster storage in PostgreSQL, BACKUP_DIR in tmp."""
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, orgs=4, days=6, seed=13)
    assert ingest_directory(db_url, landing).ok
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    dagster_url = create_database(server_url, "test_backup_schedule_dagster")
    values = {
        "DATABASE_URL": db_url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        "BACKUP_DIR": str(tmp_path_factory.mktemp("backups")),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield values
    drop_database(server_url, "test_backup_schedule_dagster")


@pytest.fixture(scope="module")
def instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    # Storage connections kept open as `attribution run` keeps them (orchestration/run.py).
    with dg.DagsterInstance.get() as inst, pooled_storage(inst):
        yield inst


@pytest.fixture(scope="module")
def definitions(env: dict[str, str]) -> dg.Definitions:
    """The backup module's definitions with the workspace's database resource. (That
    the workspace loads them, and daily_refresh leaves them out, is asserted by
    test_orchestration.py's definitions test: loading every dbt model here too would
    cost 10-20 s.)"""
    return dg.Definitions(
        assets=[BACKUP_ASSET],
        asset_checks=[backups.restore_drill_check],
        jobs=[backups.database_backup, backups.backup_drill_job],
        schedules=[backups.backup_schedule, backups.backup_drill_schedule],
        resources={"database": PlatformDatabase(url=dg.EnvVar("DATABASE_URL"))},
    )


@pytest.fixture(scope="module")
def first_run(
    env: dict[str, str], instance: dg.DagsterInstance, definitions: dg.Definitions
) -> dict[str, object]:
    """One run of the backup job, with the live database's tables before and after."""
    before = table_digests(env["DATABASE_URL"])
    result = definitions.resolve_job_def(BACKUP_RUN).execute_in_process(instance=instance)
    return {"result": result, "before": before, "after": table_digests(env["DATABASE_URL"])}


def databases(server_url: str) -> set[str]:
    with psycopg.connect(server_url) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def run_drill(definitions: dg.Definitions, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    """The check job on its own, as its schedule runs it."""
    result = definitions.resolve_job_def(DRILL_RUN).execute_in_process(instance=instance)
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == DRILL_CHECK
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    return evaluation


def copy_latest_complete(root: Path, target: Path) -> Path:
    newest = sorted(p for p in root.iterdir() if (p / MANIFEST).exists())[-1]
    return Path(shutil.copytree(newest, target / newest.name))


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_the_job_schedules_and_check(definitions: dg.Definitions) -> None:
    repo = definitions.get_repository_def()
    schedules = {
        s.name: (s.job_name, s.cron_schedule, s.execution_timezone) for s in repo.schedule_defs
    }
    assert schedules == {
        "database_backup_schedule": (BACKUP_RUN, Settings.from_environment().backup_cron, "UTC"),
        "backup_restore_drill_schedule": (DRILL_RUN, "0 12 * * *", "UTC"),
    }
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in repo.schedule_defs)
    assert repo.asset_graph.get(BACKUP_ASSET.key).group_name == "platform"
    drill_nodes = [n.name for n in definitions.resolve_job_def(DRILL_RUN).nodes]
    assert len(drill_nodes) == 1 and DRILL_CHECK in drill_nodes[0]
    backup_nodes = {n.name for n in definitions.resolve_job_def(BACKUP_RUN).nodes}
    assert backup_nodes == {"write_database_backup", "drill_new_backup"}


def test_backup_settings_are_read_and_refused_clearly() -> None:
    settings = Settings.from_environment({})
    assert settings.backup_root == project_root() / "data" / "backups"
    assert (settings.backup_keep, settings.backup_cron) == (7, "0 2 * * *")
    custom = Settings.from_environment(
        {"BACKUP_DIR": "/srv/b", "BACKUP_KEEP": "3", "BACKUP_CRON": " 0  */6 * * * "}
    )
    assert (custom.backup_root, custom.backup_keep) == (Path("/srv/b"), 3)
    assert backup_cron(custom) == "0 */6 * * *"
    assert max_backup_age("0 */6 * * *") == timedelta(hours=8)
    assert max_backup_age("0 2 * * *") == timedelta(hours=26)
    for bad in ("0", "-1", "seven"):
        with pytest.raises(ValueError, match="BACKUP_KEEP"):
            Settings.from_environment({"BACKUP_KEEP": bad})
    with pytest.raises(ValueError, match="BACKUP_CRON"):
        backup_cron(Settings.from_environment({"BACKUP_CRON": "every day"}))


def test_backup_job_records_the_backup_and_its_drill_passes(
    env: dict[str, str], server_url: str, instance: dg.DagsterInstance, first_run: dict
) -> None:
    result = first_run["result"]
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == BACKUP_ASSET.key
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    folder = Path(metadata["path"])
    assert folder.parent == Path(env["BACKUP_DIR"])
    assert re.fullmatch(r"backup-\d{8}T\d{6}Z", folder.name)
    assert metadata["size_bytes"] == sum(f.stat().st_size for f in folder.iterdir()) > 0
    assert metadata["duration_seconds"] > 0
    platform_name = env["DATABASE_URL"].rsplit("/", 1)[-1]
    assert metadata["databases"] == (
        f"platform: {platform_name}, dagster: test_backup_schedule_dagster"
    )
    # Nothing else in the folder: the temporary name is gone once complete.
    assert [p.name for p in Path(env["BACKUP_DIR"]).iterdir()] == [folder.name]

    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == 2
    platform = manifest["databases"][0]
    assert platform["purpose"] == "platform"
    live_counts = {t: count for t, (count, _) in first_run["before"].items()}
    assert platform["row_counts"] == live_counts
    assert platform["row_counts"]["raw.deals"] > 10
    dagster_counts = manifest["databases"][1]["row_counts"]
    assert dagster_counts["public.runs"] >= 1  # this run itself, as of the dump's snapshot

    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == DRILL_KEY and evaluation.passed, evaluation.description
    drill = {k: v.value for k, v in evaluation.metadata.items()}
    assert drill["backup"] == str(folder)
    assert drill["tables_compared"] == len(platform["row_counts"]) + len(dagster_counts)
    assert drill["rows_compared"] == sum(platform["row_counts"].values()) + sum(
        dagster_counts.values()
    )
    assert drill["mismatch_count"] == 0 and drill["drill_seconds"] > 0
    # The check's history holds it, against this backup's materialization.
    (record,) = instance.event_log_storage.get_asset_check_execution_history(DRILL_KEY, limit=5)
    assert record.run_id == result.run_id
    target = record.event.dagster_event.event_specific_data.target_materialization_data
    assert target is not None and target.run_id == result.run_id
    # The live database is as it was; the scratch database is gone.
    assert first_run["after"] == first_run["before"]
    assert DRILL_DATABASE not in databases(server_url)


def test_retention_keeps_the_newest_and_clears_stale_unfinished_backups(
    env: dict[str, str], instance: dg.DagsterInstance, definitions: dg.Definitions, first_run: dict
) -> None:
    root = Path(env["BACKUP_DIR"])
    (newest,) = [p for p in root.iterdir()]
    created = datetime.strptime(newest.name, "backup-%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    older = [backup_name(created - timedelta(days=d)) for d in (1, 2, 3)]
    for name in older:  # as earlier days' backups
        shutil.copytree(newest, root / name)
    stale = root / (backup_name(created - timedelta(days=4)) + ".partial")
    fresh = root / (backup_name(created - timedelta(minutes=5)) + ".partial")
    no_manifest = root / backup_name(created - timedelta(days=5))
    for path in (stale, fresh, no_manifest):
        path.mkdir()
        (path / "platform.dump").write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    for path in (stale, no_manifest):
        os.utime(path, (two_days_ago, two_days_ago))
    (root / "README.txt").write_text("the operator's notes")

    result = definitions.resolve_job_def(BACKUP_RUN).execute_in_process(
        instance=instance,
        run_config={"ops": {"write_database_backup": {"config": {"keep": 2}}}},
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    latest = Path(event.materialization.metadata["path"].value)
    remaining = sorted(p.name for p in root.iterdir())
    # The two newest complete backups; the unfinished one of 5 minutes ago (it may be
    # still being written) and a file that is not a backup stay.
    assert remaining == sorted([newest.name, latest.name, fresh.name, "README.txt"])
    removed = event.materialization.metadata["removed"].value
    assert sorted(removed.split(", ")) == sorted([*older, stale.name, no_manifest.name])
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["backup"].value == str(latest)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local webhook: (its URL, what it received)."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_drill_without_a_backup_fails_and_is_alerted(
    env: dict[str, str],
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    tmp_path: Path,
    receiver: tuple[str, list[dict]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "never-written"))
    (tmp_path / "never-written").mkdir()
    (tmp_path / "never-written" / "backup-20260101T020000Z.partial").mkdir()  # a crashed one
    last_event = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
        ascending=False,
        limit=1,
    )
    evaluation = run_drill(definitions, instance)
    assert not evaluation.passed
    assert "no complete backup" in evaluation.description
    assert evaluation.metadata["backup"].value == "none"

    url, received = receiver
    context = dg.build_sensor_context(
        instance=instance,
        resources={"alert_webhook": AlertWebhook(webhook_url=url)},
        cursor=str(last_event[0].storage_id) if last_event else None,
    )
    failed_check_alert(context)
    texts = [message["text"] for message in received]
    assert any("platform/database_backup" in t and DRILL_CHECK in t for t in texts), texts


def test_drill_fails_when_the_latest_backup_is_too_old(
    env: dict[str, str],
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first_run: dict,
) -> None:
    folder = copy_latest_complete(Path(env["BACKUP_DIR"]), tmp_path)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path))
    created = datetime.now(UTC) - timedelta(hours=27)
    edit_manifest(folder, lambda m: m.update(created_at=created.isoformat(timespec="seconds")))
    evaluation = run_drill(definitions, instance)
    assert not evaluation.passed
    assert "h old: more than the 26 h its schedule allows" in evaluation.description
    assert evaluation.metadata["backup_age_hours"].value >= 27
    # It did restore and compare: only its age is wrong.
    assert evaluation.metadata["mismatch_count"].value == 0
    assert evaluation.metadata["tables_compared"].value > 0


def test_drill_fails_on_a_damaged_or_incomplete_backup(
    env: dict[str, str],
    server_url: str,
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first_run: dict,
) -> None:
    before = table_digests(env["DATABASE_URL"])
    folder = copy_latest_complete(Path(env["BACKUP_DIR"]), tmp_path)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path))
    dump = folder / "platform.dump"
    intact = dump.read_bytes()

    # Truncated: refused by its checksum before anything is restored.
    dump.write_bytes(intact[: len(intact) // 2])
    evaluation = run_drill(definitions, instance)
    assert not evaluation.passed and "checksum" in evaluation.description

    # The same, with the manifest made to agree: pg_restore itself refuses it. (From
    # here on the platform database only, and the drill called directly: the check
    # above is the same function.)
    def agree(manifest: dict) -> None:
        manifest["databases"] = manifest["databases"][:1]
        manifest["databases"][0]["sha256"] = hashlib.sha256(dump.read_bytes()).hexdigest()

    edit_manifest(folder, agree)
    report = restore_drill(env["DATABASE_URL"], tmp_path, timedelta(days=1))
    assert not report.passed and report.tables_compared == 0
    (problem,) = report.problems
    assert problem.startswith("platform: platform.dump does not restore: pg_restore failed")

    # Intact archive, but the manifest counted a row the archive does not hold.
    dump.write_bytes(intact)
    edit_manifest(folder, agree)
    counts = json.loads((folder / MANIFEST).read_text())["databases"][0]["row_counts"]
    edit_manifest(folder, lambda m: m["databases"][0]["row_counts"].update(
        {"raw.deals": counts["raw.deals"] + 1}))  # fmt: skip
    report = restore_drill(env["DATABASE_URL"], tmp_path, timedelta(days=1))
    assert not report.problems and report.tables_compared == len(counts)
    deals = counts["raw.deals"]
    assert report.mismatches == [
        f"platform raw.deals: {deals + 1} rows in the backup, {deals} restored"
    ]
    # None of it touched the live database or left the scratch one behind.
    assert table_digests(env["DATABASE_URL"]) == before
    assert DRILL_DATABASE not in databases(server_url)


def test_drill_refuses_a_scratch_name_in_use(env: dict[str, str], first_run: dict) -> None:
    live = env["DATABASE_URL"].rsplit("/", 1)[-1]
    before = table_digests(env["DATABASE_URL"])
    for name in (live, "test_backup_schedule_dagster", "postgres"):
        with pytest.raises(DatabaseError, match="refuses"):
            restore_drill(
                env["DATABASE_URL"], Path(env["BACKUP_DIR"]), timedelta(days=1), scratch=name
            )
    assert table_digests(env["DATABASE_URL"]) == before


def test_a_format_1_backup_still_reads_and_restores_but_cannot_pass_the_drill(
    env: dict[str, str], tmp_path: Path, first_run: dict
) -> None:
    """Backups written before row counts were recorded (format 1): restore reads them;
    the drill restores them but says there is nothing to compare."""
    folder = copy_latest_complete(Path(env["BACKUP_DIR"]), tmp_path)

    def format_1(manifest: dict) -> None:
        manifest["format"] = 1
        manifest["databases"] = manifest["databases"][:1]  # the platform database: faster
        del manifest["databases"][0]["row_counts"]

    edit_manifest(folder, format_1)
    assert read_manifest(folder)["format"] == 1
    report = restore_drill(env["DATABASE_URL"], tmp_path, timedelta(days=1))
    assert report.problems == ["platform: the backup (format 1) has no row counts to compare with"]
    assert report.tables_compared == 0 and not report.mismatches


def test_a_table_rebuilt_as_the_backup_starts_is_counted_as_dumped(
    env: dict[str, str], tmp_path: Path, first_run: dict
) -> None:
    """dbt rebuilds `table` models aside and renames them in place. A dump whose
    snapshot predates such a swap reads the new table by its name, and sees none of
    its rows: the backup notices the name moved and dumps again."""
    url = env["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema race")
        conn.execute("create table race.t as select generate_series(1, 1000) as x")
    outcome: list[object] = []
    try:
        with psycopg.connect(url) as rebuild:
            rebuild.execute("create table race.t_new as select generate_series(1, 2000) as x")
            rebuild.execute("drop table race.t")
            rebuild.execute("alter table race.t_new rename to t")

            def back_up() -> None:
                try:
                    outcome.append(rotated_backup(url, tmp_path, keep=1))
                except Exception as exc:  # noqa: BLE001 - asserted below
                    outcome.append(exc)

            worker = threading.Thread(target=back_up)
            worker.start()
            # Commit the swap once pg_dump, on its snapshot from before it, waits for
            # the table (a bound on the wait, not a timing assertion).
            deadline, tried = time.monotonic() + 60, 0
            with psycopg.connect(url, autocommit=True) as watch:
                while worker.is_alive() and time.monotonic() < deadline:
                    (tried,) = watch.execute(
                        "select count(*) from pg_stat_activity where datname = current_database()"
                        " and wait_event_type = 'Lock' and query ilike 'lock table %race%'"
                    ).fetchone()
                    if tried:
                        break
                    time.sleep(0.05)
            assert tried
        worker.join()
        (done,) = outcome
        assert not isinstance(done, Exception), done
        assert done.manifest["databases"][0]["row_counts"]["race.t"] == 2000
        report = restore_drill(url, tmp_path, timedelta(days=1))
        assert report.passed, report.problems + report.mismatches
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("drop schema race cascade")
