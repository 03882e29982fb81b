"""`attribution db backup` / `restore`: a real pipeline run, its databases destroyed and
brought back from the backup, compared row for row with what was there before."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from orchestration.definitions import defs as load_defs
from platform_core.backup import parse_roles
from platform_core.migrations import migrate
from platform_core.settings import project_root
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.ingest_helpers import fetch
from tests.test_cli import attribution

MART_TABLES = ("fct_partner_attribution", "fct_deals", "partner_performance",
               "org_daily_metrics", "dim_organizations", "attribution_backlog")  # fmt: skip


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row in order) for each table of each user schema."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')"
            " and n.nspname not like 'pg\\_%' order by 1, 2"
        ).fetchall()
        digests = {}
        for schema, table in tables:
            query = sql.SQL(
                "select count(*), coalesce(md5(string_agg(t::text, chr(10) order by t::text)), '')"
                " from {}.{} t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            digests[f"{schema}.{table}"] = tuple(conn.execute(query).fetchone())
    return digests


def mart_rows(url: str) -> dict[str, list[tuple]]:
    rows = {}
    for table in MART_TABLES:
        query = sql.SQL("select * from marts.{}").format(sql.Identifier(table))
        with psycopg.connect(url) as conn:
            rows[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return rows


def dagster_history(full: bool) -> dict[str, object]:
    """What Dagster itself reads from its storage: runs, their events, materializations,
    check executions."""
    key = dg.AssetKey(["marts", "fct_deals"] if full else ["raw", "deals"])
    with dg.DagsterInstance.get() as instance:
        runs = {
            r.dagster_run.run_id: r.dagster_run.status.value for r in instance.get_run_records()
        }
        events = {run_id: len(instance.all_logs(run_id)) for run_id in runs}
        records = instance.fetch_materializations(key, limit=100).records
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(
                dg.AssetKey(["marts", "attribution_backlog"]), "backlog_within_limits"
            ),
            limit=100,
        )
    return {
        "runs": runs,
        "events": events,
        "materializations": [(r.run_id, r.storage_id) for r in records],
        "backlog_check_runs": sorted((c.run_id, c.status.value) for c in checks),
    }


def add_bi_role(url: str) -> tuple[str, str]:
    """A cluster-global login role with a password, a membership and a grant on a mart
    (as the per-org BI roles have)."""
    role, password = f"bk_reader_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(sql.SQL("grant bi_reader to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant usage on schema raw to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on raw.deals to {}").format(sql.Identifier(role)))
    return role, password


@contextlib.contextmanager
def deployment(server_url: str, name: str, tmp: Path, full: bool) -> Iterator[dict[str, str]]:
    """A platform database and Dagster storage with history. `full`: after `attribution
    run` (daily_refresh: marts, checks); else after the Dagster `ingest` job only."""
    platform = create_database(server_url, name)
    migrate(platform)
    dagster_url = create_database(server_url, f"{name}_dagster")
    landing = tmp / "landing"
    generate(landing, orgs=6, days=35 if full else 10, seed=21)
    env = {
        "DATABASE_URL": platform,
        "DAGSTER_PG_URL": dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "LANDING_DIR": str(landing),
    }
    (tmp / "dagster_home").mkdir()
    shutil.copy(project_root() / "dagster.yaml", tmp / "dagster_home" / "dagster.yaml")
    role = ""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            if full:
                done = attribution("run", env=env)
                assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            else:
                with dg.DagsterInstance.get() as instance:
                    job = load_defs().resolve_job_def("ingest")
                    assert job.execute_in_process(instance=instance).success
            role, password = add_bi_role(platform)
            yield {**env, "dagster_url": dagster_url, "role": role, "password": password}
    finally:
        drop_database(server_url, name)
        drop_database(server_url, f"{name}_dagster")
        if role:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def test_parse_roles_reads_quoted_names_and_memberships() -> None:
    text = (
        "\\restrict abc\nSET client_encoding = 'UTF8';\n"
        'CREATE ROLE "org ""7"" bi";\n'
        'ALTER ROLE "org ""7"" bi" WITH LOGIN PASSWORD \'SCRAM-SHA-256$4096:x\';\n'
        "ALTER ROLE r2 SET work_mem TO '10MB';\n"
        'GRANT bi_reader TO "org ""7"" bi" WITH INHERIT TRUE GRANTED BY postgres;\n'
    )
    parsed = [(s.kind, s.role, s.granted) for s in parse_roles(text)]
    assert parsed == [
        ("create", 'org "7" bi', None),
        ("alter", 'org "7" bi', None),
        ("alter", "r2", None),
        ("grant", 'org "7" bi', "bi_reader"),
    ]


def round_trip(deployment: dict[str, str], server_url: str, tmp_path: Path, full: bool) -> None:
    """Back up, refuse to overwrite, destroy (databases and role), restore, compare."""
    platform, dagster_url, role = (
        deployment["DATABASE_URL"],
        deployment["dagster_url"],
        deployment["role"],
    )
    marts_before = mart_rows(platform) if full else {}
    platform_before = table_digests(platform)
    dagster_before, history_before = table_digests(dagster_url), dagster_history(full)
    assert platform_before["raw.deals"][0] > 10
    assert history_before["runs"] and all(s == "SUCCESS" for s in history_before["runs"].values())
    assert history_before["materializations"]
    if full:
        assert sum(len(rows) for rows in marts_before.values()) > 100
        assert history_before["backlog_check_runs"]
    temp_for_public = "select has_database_privilege('public', current_database(), 'TEMPORARY')"
    assert fetch(platform, temp_for_public) == [(False,)]  # migration 0002

    folder = tmp_path / "backup"
    done = attribution("db", "backup", str(folder))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    databases = {d["purpose"]: d for d in manifest["databases"]}
    assert databases["platform"]["name"] == platform.rsplit("/", 1)[-1]
    assert databases["dagster"]["name"] == dagster_url.rsplit("/", 1)[-1]
    for entry in databases.values():
        assert (folder / entry["file"]).stat().st_size == entry["size_bytes"] > 0
    # Every table's rows, as the restore drill compares them (test_backup_schedule.py).
    assert manifest["format"] == 2
    assert databases["platform"]["row_counts"] == {t: n for t, (n, _) in platform_before.items()}
    assert databases["dagster"]["row_counts"] == {t: n for t, (n, _) in dagster_before.items()}
    assert role in manifest["roles"]["roles"] and manifest["roles"]["with_passwords"]
    for path in folder.iterdir():  # rows and password hashes: owner only
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    refused = attribution("db", "restore", str(folder))
    assert refused.returncode == 2 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert table_digests(platform) == platform_before

    # Disaster: both databases and the BI role are gone.
    drop_database(server_url, platform.rsplit("/", 1)[-1])
    drop_database(server_url, dagster_url.rsplit("/", 1)[-1])
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))

    done = attribution("db", "restore", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"roles created: {role}" in done.stdout
    if full:
        assert mart_rows(platform) == marts_before
    assert table_digests(platform) == platform_before
    assert table_digests(dagster_url) == dagster_before
    assert dagster_history(full) == history_before
    assert fetch(platform, temp_for_public) == [(False,)]
    # The role is back with its password hash, membership and grant.
    parts = urlsplit(platform)
    as_role = urlunsplit(parts._replace(
        netloc=f"{role}:{quote(deployment['password'], safe='')}@{parts.hostname}:{parts.port}"))  # fmt: skip
    assert fetch(as_role, "select count(*) from raw.deals") == [(platform_before["raw.deals"][0],)]
    assert fetch(as_role, "select pg_has_role(current_user, 'bi_reader', 'member')") == [(True,)]

    # --force replaces databases that hold data, with the same result.
    forced = attribution("db", "restore", str(folder), "--force")
    assert forced.returncode == 0, forced.stderr
    assert table_digests(platform) == platform_before
    assert table_digests(dagster_url) == dagster_before

    # A damaged backup is refused before anything is touched.
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    with open(damaged / "platform.dump", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0\0\0\0")
    refused = attribution("db", "restore", str(damaged), "--force")
    assert refused.returncode == 2 and "checksum" in refused.stderr
    (damaged / "manifest.json").unlink()
    refused = attribution("db", "restore", str(damaged), "--force")
    assert refused.returncode == 2 and "not a complete backup" in refused.stderr
    assert table_digests(platform) == platform_before


def test_backup_destroy_restore_gives_back_raw_history_and_roles(
    server_url: str, tmp_path: Path
) -> None:
    with deployment(server_url, "test_backup_fast", tmp_path, full=False) as env:
        round_trip(env, server_url, tmp_path, full=False)


@pytest.mark.slow
def test_backup_destroy_restore_gives_back_marts_and_run_history(
    server_url: str, tmp_path: Path
) -> None:
    """The same after a whole `attribution run`: every mart row, every Dagster event."""
    with deployment(server_url, "test_backup_full", tmp_path, full=True) as env:
        round_trip(env, server_url, tmp_path, full=True)
