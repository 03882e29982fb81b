"""The password of DATABASE_URL never shows: not in command output, error messages, dbt's
logs and artifacts, Dagster's storage (runs, tags, event logs, snapshots) or backups.

The platform connects as a login role whose password is distinctive
(`Pw-<random hex>-'"%`, so the URL must percent-encode it); every check looks for
the random part, which any spelling of the password (raw, percent-encoded,
JSON-escaped) contains.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from orchestration.dbt_invocation import DBT_PROJECT_DIR, run_dbt
from platform_core.database import DatabaseError, connect, redact_secrets, redact_url
from platform_core.migrations import migrate
from platform_core.settings import project_root
from synthetic_crm import generate
from tests.conftest import drop_database, with_database
from tests.test_cli import attribution


def url_for(server_url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(server_url)
    netloc = f"{user}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


def distinctive_password() -> tuple[str, str]:
    token = secrets.token_hex(10)
    return token, f"Pw-{token}-'\"%"


def text_of(value: object) -> str:
    """A stored value as searchable text; Dagster keeps snapshots zlib-compressed."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        with contextlib.suppress(zlib.error):
            raw = zlib.decompress(raw)
        return raw.decode("latin-1")
    return str(value)


def tables_containing(url: str, token: str) -> list[str]:
    """Every table (any schema) of the database at `url` with `token` in a value."""
    hits = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')"
            " and n.nspname not like 'pg\\_%'"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("select * from {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                if any(token in text_of(v) for v in row if v is not None):
                    hits.append(f"{schema}.{table}")
                    break
    return hits


def files_containing(folder: Path, token: str, since: float = 0.0) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_mtime >= since and token in text_of(path.read_bytes()):
            hits.append(str(path))
    return hits


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secret(server_url: str) -> Iterator[dict[str, str]]:
    """A login role with the distinctive password owning the platform and Dagster
    databases; DATABASE_URL and DAGSTER_PG_URL as a deployment would set them."""
    token, password = distinctive_password()
    role = "secrets_app_" + secrets.choice("abcdefgh") * 4  # no hex run shared with the token
    names = ("test_secrets_platform", "test_secrets_dagster")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("create role {} login createdb password {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        # The roles the migrations create (a role without CREATEROLE could not), as a
        # deployment's administrator would: the server may be fresh (this module first).
        conn.execute(
            "do $$ begin if not exists (select from pg_roles where rolname = 'bi_reader')"
            " then create role bi_reader login; end if;"
            " if not exists (select from pg_roles where rolname = 'bi_org_reader')"
            " then create role bi_org_reader nologin; end if; end $$"
        )
        for name in names:
            drop_database(server_url, name)
            conn.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )
    platform = url_for(server_url, role, password, names[0])
    dagster = url_for(server_url, role, password, names[1])
    migrate(platform)
    yield {
        "token": token,
        "password": password,
        "role": role,
        "DATABASE_URL": platform,
        "DAGSTER_PG_URL": dagster.replace("postgresql://", "postgresql+psycopg2://", 1),
        "dagster_url": dagster,
        # Superuser views of the same databases, to read everything stored there.
        "platform_admin": with_database(server_url, names[0]),
        "dagster_admin": with_database(server_url, names[1]),
    }
    for name in names:
        drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_redact_secrets_removes_every_spelling() -> None:
    token, password = distinctive_password()
    url = f"postgresql://app:{quote(password, safe='')}@db.example:5432/attribution"
    message = f"failed: {url} / {password} / {quote(password, safe='')} / password={password}"
    cleaned = redact_secrets(message, url)
    assert token not in cleaned and "db.example" in cleaned
    assert token not in redact_url(url) and redact_url(url).startswith("postgresql://app:***@")


def test_malformed_url_error_does_not_quote_the_password(secret: dict[str, str]) -> None:
    # libpq quotes a bad percent-escape, password and all; we must not pass that on.
    token, _ = distinctive_password()
    bad = secret["DATABASE_URL"].replace(quote(secret["password"], safe=""), f"Pw-{token}-%zz")
    with pytest.raises(DatabaseError) as raised:
        connect(bad)
    assert token not in str(raised.value) and "percent" in str(raised.value)
    done = attribution("ingest", str(project_root() / "nowhere"), env={"DATABASE_URL": bad})
    assert done.returncode == 2 and token not in done.stdout + done.stderr, done.stderr
    assert "not a valid PostgreSQL URL" in done.stderr


def test_ingest_dbt_and_backup_output_never_show_the_password(
    secret: dict[str, str], tmp_path: Path
) -> None:
    token, env = secret["token"], {"DATABASE_URL": secret["DATABASE_URL"]}
    landing = tmp_path / "landing"
    generate(landing, orgs=4, days=6, seed=5)
    done = attribution("ingest", str(landing), env=env)
    assert done.returncode == 0, done.stderr
    assert "***" in done.stdout and token not in done.stdout + done.stderr

    # dbt, failing on SQL (a source table is missing): output, dbt.log and artifacts.
    with psycopg.connect(secret["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("alter table raw.deals rename to deals_away")
    try:
        failed = run_dbt(
            secret["DATABASE_URL"], ["run", "--select", "staging"], True, tmp_path / "dbt"
        )
    finally:
        with psycopg.connect(secret["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("alter table raw.deals_away rename to deals")
    assert failed.returncode != 0 and "deals" in failed.stdout
    assert token not in failed.stdout + failed.stderr
    assert (tmp_path / "dbt" / "logs" / "dbt.log").exists()
    assert files_containing(tmp_path / "dbt", token) == []

    # Backup and restore as this (non-superuser) role: output and every file written.
    folder = tmp_path / "backup"
    done = attribution(
        "db", "backup", str(folder), env={**env, "DAGSTER_PG_URL": secret["DAGSTER_PG_URL"]}
    )
    assert done.returncode == 0, done.stderr
    assert "WITHOUT passwords" in done.stdout  # pg_authid is for superusers only
    restored = attribution(
        "db",
        "restore",
        str(folder),
        "--force",
        env={**env, "DAGSTER_PG_URL": secret["DAGSTER_PG_URL"]},
    )
    assert restored.returncode == 0, restored.stderr
    assert token not in done.stdout + done.stderr + restored.stdout + restored.stderr
    assert files_containing(folder, token) == []


@pytest.mark.slow  # ~16 s of connection timeouts
def test_wrong_password_and_unreachable_server_errors(
    secret: dict[str, str], tmp_path: Path
) -> None:
    token, wrong = distinctive_password()
    role = secret["role"]
    parts = urlsplit(secret["DATABASE_URL"])
    cases = {
        "wrong password": (url_for(secret["DATABASE_URL"], role, wrong, "test_secrets_platform"),
                           "password authentication failed"),
        "server down": (f"postgresql://{role}:{quote(wrong, safe='')}@127.0.0.1:{closed_port()}/x",
                        "refused"),
        "unknown host": (f"postgresql://{role}:{quote(wrong, safe='')}@nohost.invalid:5432/x",
                         "cannot connect"),
    }  # fmt: skip
    assert parts.hostname == "127.0.0.1"
    commands = {
        "wrong password": (["ingest", str(tmp_path)], ["run"], ["db", "backup", str(tmp_path / "b")]),
        "server down": (["ingest", str(tmp_path)], ["db", "backup", str(tmp_path / "b")]),
        "unknown host": (["ingest", str(tmp_path)],),
    }  # fmt: skip
    for case, (url, expected) in cases.items():
        env = {"DATABASE_URL": url, "LANDING_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
        for command in commands[case]:
            done = attribution(*command, env=env)
            output = done.stdout + done.stderr
            assert done.returncode == 2, (case, command, output)
            assert expected in output and "***" in output, (case, command, output)
            assert token not in output, (case, command, output)
        if case == "unknown host":
            continue
        # dbt's own connection error, in its output and its log file.
        logs = tmp_path / case.replace(" ", "_")
        failed = run_dbt(url, ["debug", "--connection"], True, logs)
        assert failed.returncode != 0
        assert token not in failed.stdout + failed.stderr
        assert (logs / "logs" / "dbt.log").exists() and files_containing(logs, token) == []


def test_data_quality_check_error_does_not_show_the_password(secret: dict[str, str]) -> None:
    from orchestration.quality import validate_table

    token, wrong = distinctive_password()
    url = url_for(secret["DATABASE_URL"], secret["role"], wrong, "test_secrets_platform")
    with pytest.raises(Exception) as raised:
        validate_table(url, "marts", "fct_deals")
    assert token not in str(raised.value) and token not in repr(raised.value)


@pytest.fixture
def deployment_env(secret: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DATABASE_URL": secret["DATABASE_URL"],
        "DAGSTER_PG_URL": secret["DAGSTER_PG_URL"],
        "DAGSTER_HOME": str(home),
        "LANDING_DIR": str(tmp_path / "landing"),
    }
    generate(Path(env["LANDING_DIR"]), orgs=4, days=8, seed=9)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


def test_dagster_runs_store_no_password(
    secret: dict[str, str], deployment_env: dict[str, str]
) -> None:
    """The ingest job, once with the right URL and once with a wrong password (the run
    fails with a connection error): Dagster's storage holds neither password."""
    from orchestration.definitions import defs

    wrong_token, wrong = distinctive_password()
    job = defs().resolve_job_def("ingest")
    with dg.DagsterInstance.get() as instance:
        assert job.execute_in_process(instance=instance).success
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(
                "DATABASE_URL",
                url_for(secret["DATABASE_URL"], secret["role"], wrong, "test_secrets_platform"),
            )
            failed = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        errors = [
            e.event_specific_data.error.to_string() for e in failed.all_events if e.is_step_failure
        ]
        assert errors and "password authentication failed" in errors[0] and "***" in errors[0]
    for token in (secret["token"], wrong_token):
        assert tables_containing(secret["dagster_admin"], token) == []
        assert tables_containing(secret["platform_admin"], token) == []
        assert files_containing(Path(deployment_env["DAGSTER_HOME"]), token) == []


@pytest.mark.slow
def test_attribution_run_success_and_dbt_failure_store_no_password(
    secret: dict[str, str], deployment_env: dict[str, str]
) -> None:
    """`attribution run` (daily_refresh: ingestion, dbt build, checks) succeeding, then
    failing in dbt: command output, dbt logs, Dagster's storage and home."""
    token, started = secret["token"], time.time()
    done = attribution("run", env=deployment_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert token not in done.stdout + done.stderr
    with psycopg.connect(secret["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("alter table raw.touchpoints rename to touchpoints_away")
    try:
        failed = attribution("run", env=deployment_env)
    finally:
        with psycopg.connect(secret["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("alter table raw.touchpoints_away rename to touchpoints")
    # The CLI's one line for failed steps (attribution/cli.py): dbt's step, failing on SQL.
    assert failed.returncode == 1 and "error: daily_refresh failed: dbt_models" in failed.stderr
    assert token not in failed.stdout + failed.stderr
    assert tables_containing(secret["dagster_admin"], token) == []
    assert tables_containing(secret["platform_admin"], token) == []
    assert files_containing(Path(deployment_env["DAGSTER_HOME"]), token) == []
    # dagster-dbt writes each invocation's dbt.log and artifacts under target/<id>/.
    dbt_files = [
        p for p in (DBT_PROJECT_DIR / "target").rglob("dbt.log") if p.stat().st_mtime >= started
    ]
    assert dbt_files
    assert files_containing(DBT_PROJECT_DIR / "target", token, since=started) == []
