"""`attribution db backup PATH` / `attribution db restore PATH`: logical backups.

A backup is a directory holding, for each database of the platform, a `pg_dump`
custom-format archive, plus the cluster's roles and a manifest:

    manifest.json   when, tool and server versions, databases, sizes, checksums
    roles.sql       `pg_dumpall --roles-only` (password hashes: mode 0600)
    platform.dump   the platform database (DATABASE_URL / embedded `attribution`)
    dagster.dump    Dagster's storage (DAGSTER_PG_URL / `dagster` on the same server):
                    run history, event logs, sensor cursors, check history

Why logical dumps rather than a copy of the data directory: they work the same on
the embedded server and on a managed one, across PostgreSQL versions, and a
restore can target a server on a new machine. Roles are cluster-global, so
`pg_dump` does not carry them; they are saved beside the dumps and re-created
(only the missing ones) before the archives are restored, so ownership and GRANTs
(bi_reader, per-org BI roles) come back.

Passwords reach the PostgreSQL programs through PGPASSWORD in their environment,
never on their command line, and never appear in the manifest or in messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from platform_core.database import (
    DatabaseError,
    connect,
    conninfo_params,
    pg_client_tool,
    redact_secrets,
    redact_url,
    require_supported_server,
)
from platform_core.settings import DAGSTER_DATABASE, Settings

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROLES_FILE = "roles.sql"
PRIVATE = 0o600  # dumps hold every row and password hashes


@dataclass(frozen=True)
class Target:
    """One database to save or restore: which purpose it serves and where it is."""

    purpose: str  # "platform" or "dagster"
    url: str

    @property
    def name(self) -> str:
        return conninfo_params(self.url).get("dbname") or ""

    @property
    def file(self) -> str:
        return f"{self.purpose}.dump"


def dagster_url(platform_url: str) -> str:
    """Dagster's storage as a libpq URL: DAGSTER_PG_URL without its SQLAlchemy driver,
    else the `dagster` database on the platform's server (orchestration/instance.py)."""
    configured = Settings.from_environment().dagster_pg_url
    if configured:
        return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", configured)
    return urlunsplit(urlsplit(platform_url)._replace(path=f"/{DAGSTER_DATABASE}"))


def targets(platform_url: str) -> list[Target]:
    return [Target("platform", platform_url), Target("dagster", dagster_url(platform_url))]


# --- running the PostgreSQL programs ----------------------------------------------------
def _with_database(url: str, name: str) -> str:
    """The same server and credentials, another database (still a URL, so that
    redact_url can hide its password in messages)."""
    conninfo_params(url)  # refuse a malformed URL without quoting it
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _tool_args(url: str) -> tuple[str, dict[str, str]]:
    """(conninfo without the password, environment carrying it) for a libpq program."""
    params = conninfo_params(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env


def _run_tool(
    tool: str, args: list[str], url: str, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a libpq program on `url`; its errors come back without the password."""
    conninfo, env = _tool_args(url)
    result = subprocess.run(
        [tool, f"--dbname={conninfo}", *args],
        env=env,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        name = Path(tool).name
        raise DatabaseError(
            f"{name} failed on {redact_url(url)}: {redact_secrets(result.stderr.strip(), url)}"
        )
    return result


def _maintenance(url: str) -> psycopg.Connection:
    """A connection to the server but not to `url`'s database (which may be dropped);
    a server older than the platform supports is refused before anything is written."""
    try:
        conn = psycopg.connect(_with_database(url, "postgres"), autocommit=True)
    except psycopg.OperationalError:
        return connect(_with_database(url, "template1"), autocommit=True)
    try:
        require_supported_server(conn, url)
    except DatabaseError:
        conn.close()
        raise
    return conn


def _server_major(url: str) -> int:
    with _maintenance(url) as conn:
        return conn.info.server_version // 10000


def _private_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tool_version(tool: str) -> str:
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()


# --- backup ------------------------------------------------------------------------------
def _database_facts(url: str) -> dict[str, object]:
    """What pg_dump leaves out without --create and restore puts back: encoding and
    database-level privileges (migration 0002 revokes TEMPORARY from PUBLIC)."""
    with connect(url) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        encoding, size, has_acl = conn.execute(
            "select pg_encoding_to_char(encoding), pg_database_size(oid), datacl is not null"
            " from pg_database where datname = current_database()"
        ).fetchone()
        acl = conn.execute(
            """
            select coalesce(g.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
            from pg_database d cross join lateral aclexplode(d.datacl) a
            left join pg_roles g on g.oid = a.grantee
            where d.datname = current_database()
            order by 1, 2
            """
        ).fetchall()
        settings = conn.execute(
            "select s.setconfig from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase"
            " where d.datname = current_database()"
        ).fetchall()
        migrations = []
        if conn.execute("select to_regclass('public.schema_migrations')").fetchone()[0]:
            migrations = [
                r[0]
                for r in conn.execute("select version from public.schema_migrations order by 1")
            ]
    return {
        "server_version": version,
        "encoding": encoding,
        "database_size_bytes": size,
        "acl": [list(row) for row in acl] if has_acl else None,
        "settings_not_restored": [s for (config,) in settings for s in config or []],
        "migrations": migrations,
    }


def _database_exists(url: str) -> bool:
    with _maintenance(url) as conn:
        name = conninfo_params(url).get("dbname")
        return (
            conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
            is not None
        )


def _dump_roles(url: str, folder: Path, tool: str) -> dict[str, object]:
    """All roles with their password hashes when we may read them (superuser), else
    without passwords (the restore then re-creates login roles without one)."""
    path = folder / ROLES_FILE
    with_passwords = True
    for extra in ([], ["--no-role-passwords"]):
        fd = _private_file(path)
        try:
            _run_tool(
                tool,
                ["--roles-only", "--no-password", *extra],
                _with_database(url, "postgres"),
                stdout=fd,
            )
            break
        except DatabaseError as exc:
            path.unlink()
            if extra or "permission denied" not in str(exc):
                raise
            with_passwords = False
        finally:
            os.close(fd)
    roles = [s.role for s in parse_roles(path.read_text()) if s.kind == "create"]
    return {
        "file": ROLES_FILE,
        "with_passwords": with_passwords,
        "roles": roles,
        "size_bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def backup(platform_url: str, folder: Path) -> dict[str, object]:
    """Write a backup of the platform and Dagster databases into `folder` (new or empty)."""
    clock = time.perf_counter()
    if folder.exists() and any(folder.iterdir()):
        raise DatabaseError(f"{folder} is not empty: choose a new directory for the backup")
    wanted = targets(platform_url)
    present = [t for t in wanted if _database_exists(t.url)]
    if not any(t.purpose == "platform" for t in present):
        raise DatabaseError(f"the platform database {redact_url(platform_url)} does not exist")
    major = max(_server_major(t.url) for t in present)
    pg_dump = pg_client_tool("pg_dump", major)
    pg_dumpall = pg_client_tool("pg_dumpall", major)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    manifest: dict[str, object] = {
        "format": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tools": {"pg_dump": _tool_version(pg_dump), "pg_dumpall": _tool_version(pg_dumpall)},
        "server_version_major": major,
        "roles": _dump_roles(platform_url, folder, pg_dumpall),
        "databases": [],
        "skipped": [t.purpose for t in wanted if t not in present],
    }
    for target in present:
        facts = _database_facts(target.url)
        path = folder / target.file
        fd = _private_file(path)
        try:
            # Custom format: compressed, and pg_restore can pick objects from it.
            _run_tool(pg_dump, ["--format=custom", "--no-password"], target.url, stdout=fd)
        finally:
            os.close(fd)
        manifest["databases"].append(  # type: ignore[union-attr]
            {
                "purpose": target.purpose,
                "name": target.name,
                "source": redact_url(target.url),
                "file": target.file,
                "size_bytes": path.stat().st_size,
                "sha256": _sha256(path),
                **facts,
            }
        )
    manifest["duration_s"] = round(time.perf_counter() - clock, 2)
    # The manifest is written last and atomically: a directory without one is not a backup.
    partial = folder / (MANIFEST + ".partial")
    fd = _private_file(partial)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=2)
    partial.rename(folder / MANIFEST)
    return manifest


# --- roles ----------------------------------------------------------------------------
_IDENT = r'(?:"(?:[^"]|"")+"|[^\s";]+)'
_ROLE_LINE = re.compile(rf"^(CREATE|ALTER) ROLE ({_IDENT})[ ;]")
_GRANT_LINE = re.compile(rf"^GRANT ({_IDENT}) TO ({_IDENT})[ ;]")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@dataclass(frozen=True)
class RoleStatement:
    kind: str  # "create", "alter" (attributes, password, settings) or "grant" (membership)
    role: str  # the role created or altered; for a grant, the member
    statement: str
    granted: str | None = None


def parse_roles(text: str) -> list[RoleStatement]:
    """The statements of a `pg_dumpall --roles-only` file, one per line."""
    statements = []
    for line in text.splitlines():
        if match := _ROLE_LINE.match(line):
            kind = "create" if match.group(1) == "CREATE" else "alter"
            statements.append(RoleStatement(kind, _unquote(match.group(2)), line))
        elif match := _GRANT_LINE.match(line):
            member, granted = _unquote(match.group(2)), _unquote(match.group(1))
            statements.append(RoleStatement("grant", member, line, granted))
    return statements


def restore_roles(url: str, text: str) -> tuple[list[str], list[str]]:
    """Create the roles of the backup that this server lacks, with their attributes,
    password hashes, settings and memberships. Roles that exist are left as they are
    (passwords included): the restoring superuser keeps its own password.
    Returns (created roles, warnings)."""
    statements = parse_roles(text)
    created: list[str] = []
    warnings: list[str] = []
    with _maintenance(url) as conn:
        existing = {r[0] for r in conn.execute("select rolname from pg_roles")}
        missing = {s.role for s in statements if s.kind == "create"} - existing
        for item in statements:
            if item.role not in missing and item.granted not in missing:
                continue
            try:
                with conn.transaction():
                    conn.execute(item.statement)  # a line of our own dump file; no parameters
            except psycopg.Error as exc:
                warnings.append(f"{item.kind} role {item.role}: {str(exc).strip().splitlines()[0]}")
                continue
            if item.kind == "create":
                created.append(item.role)
    return created, warnings


# --- restore ----------------------------------------------------------------------------
def user_relations(url: str) -> int:
    """Tables, views and sequences outside the system schemas that no extension owns."""
    with connect(url) as conn:
        return conn.execute(
            """
            select count(*) from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname not in ('pg_catalog', 'information_schema')
              and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
              and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
                              and d.objid = c.oid and d.deptype = 'e')
            """
        ).fetchone()[0]


def _recreate(target: Target, facts: dict[str, object]) -> None:
    name = sql.Identifier(target.name)
    with _maintenance(target.url) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(
            sql.SQL("create database {} template template0 encoding {}").format(
                name, sql.Literal(facts["encoding"])
            )
        )
        if facts.get("acl") is None:
            return
        # Database-level privileges as they were (e.g. no TEMPORARY for PUBLIC).
        conn.execute(sql.SQL("revoke all on database {} from public").format(name))
        roles = {r[0] for r in conn.execute("select rolname from pg_roles")}
        for grantee, privilege, grantable in facts["acl"]:  # type: ignore[union-attr]
            if grantee != "PUBLIC" and grantee not in roles:
                continue
            conn.execute(
                sql.SQL("grant {} on database {} to {}{}").format(
                    sql.SQL(privilege),  # one of CREATE / TEMPORARY / CONNECT, from aclexplode
                    name,
                    sql.SQL("public") if grantee == "PUBLIC" else sql.Identifier(grantee),
                    sql.SQL(" with grant option" if grantable else ""),
                )
            )


@dataclass
class RestoreReport:
    databases: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise DatabaseError(f"{folder} holds no {MANIFEST}: not a complete backup")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise DatabaseError(f"{path}: backup format {manifest.get('format')} is not supported")
    for entry in [manifest["roles"], *manifest["databases"]]:
        file = folder / entry["file"]
        if not file.exists() or _sha256(file) != entry["sha256"]:
            raise DatabaseError(f"{file} is missing or does not match the manifest's checksum")
    return manifest


def restore(platform_url: str, folder: Path, force: bool = False) -> RestoreReport:
    """Re-create the databases of the backup in `folder` on the configured server(s).

    Refuses to replace a database holding tables unless `force`; checks every target
    before changing anything. Then: missing roles, drop + create each database, its
    privileges, pg_restore, ANALYZE, and the migrations check.
    """
    from platform_core.migrations import migrate

    clock = time.perf_counter()
    manifest = read_manifest(folder)
    by_purpose = {t.purpose: t for t in targets(platform_url)}
    plan = [(by_purpose[entry["purpose"]], entry) for entry in manifest["databases"]]
    for target, _ in plan:
        if not force and _database_exists(target.url) and user_relations(target.url):
            raise DatabaseError(
                f"the {target.purpose} database {redact_url(target.url)} is not empty: "
                "restore replaces it entirely; pass --force to do so"
            )
    major = max(_server_major(t.url) for t, _ in plan)
    pg_restore = pg_client_tool("pg_restore", max(major, int(manifest["server_version_major"])))
    report = RestoreReport()
    servers: dict[tuple[str, str], str] = {}
    for target, _ in plan:
        params = conninfo_params(target.url)
        servers.setdefault((str(params.get("host")), str(params.get("port"))), target.url)
    roles_text = (folder / ROLES_FILE).read_text()
    for url in servers.values():
        created, warnings = restore_roles(url, roles_text)
        report.roles_created += created
        report.warnings += warnings
    for target, entry in plan:
        _recreate(target, entry)
        with connect(target.url) as conn:
            superuser = conn.execute(
                "select rolsuper from pg_roles where rolname = current_user"
            ).fetchone()[0]
        args = ["--single-transaction", "--exit-on-error", "--no-password"]
        if not superuser:  # objects then belong to the restoring role
            args.append("--no-owner")
        _run_tool(pg_restore, [*args, str(folder / entry["file"])], target.url)
        with connect(target.url, autocommit=True) as conn:
            conn.execute("analyze")  # the archive holds no planner statistics
        report.databases.append(f"{target.purpose}: {target.name}")
        report.warnings += [
            f"{target.name}: database setting not restored: {s}"
            for s in entry["settings_not_restored"]
        ]
    report.migrations_applied = migrate(platform_url)
    # Roles re-created on another server have new OIDs: re-attach the restored grants.
    from platform_core.bi_access import reattach_grants

    reattach_grants(platform_url)
    report.duration_s = round(time.perf_counter() - clock, 2)
    return report
