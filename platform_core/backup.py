"""`attribution db backup PATH` / `attribution db restore PATH`: logical backups.

A backup is a directory holding, for each database of the platform, a `pg_dump`
custom-format archive, plus the cluster's roles and a manifest:

    manifest.json   when, tool and server versions, databases, sizes, checksums,
                    and the row count of every table (what the restore drill compares)
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

Automated backups (`rotated_backup`, run daily by Dagster) are such directories
named `backup-YYYYMMDDTHHMMSSZ` under BACKUP_DIR, written under a temporary name
and renamed once complete, the oldest beyond BACKUP_KEEP deleted; the restore
drill (`restore_drill`) restores the latest into a scratch database and compares
its row counts with the manifest's.

Passwords reach the PostgreSQL programs through PGPASSWORD in their environment,
never on their command line, and never appear in the manifest or in messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

# 2: each database's entry has `row_counts` (table → rows, read in the dump's snapshot).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # format 1 restores the same; it only lacks the row counts
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


_TABLES = """
select n.nspname, c.relname, format('%I.%I', n.nspname, c.relname), c.oid
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
  and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
                  and d.objid = c.oid and d.deptype = 'e')
order by 1, 2
"""
# How long a backup keeps trying for a dump no table rebuild (DDL) raced with.
SNAPSHOT_PATIENCE_S = 600.0


def row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every table outside the system schemas (extension-owned ones aside, as
    pg_dump leaves them out). Row security off, as pg_dump has it: a policy that would
    hide rows makes this fail rather than count fewer."""
    conn.execute("select set_config('row_security', 'off', false)")
    counts = {}
    for schema, table, _, _ in conn.execute(_TABLES).fetchall():
        query = sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counts[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return counts


def _names_moved(conn: psycopg.Connection) -> bool:
    """Whether a table name of the transaction's snapshot now means another table
    (or none): a rebuild swapped or dropped it since."""
    tables = conn.execute(_TABLES).fetchall()
    (moved,) = conn.execute(
        "select count(*) from unnest(%s::text[], %s::oid[]) as t(name, oid)"
        " where to_regclass(t.name) is distinct from t.oid",
        [[name for _, _, name, _ in tables], [oid for _, _, _, oid in tables]],
    ).fetchone()
    return bool(moved)


def _dump(target: Target, path: Path, pg_dump: str) -> dict[str, int]:
    """pg_dump of `target` into `path`; returns the row counts of exactly what it dumped.

    A repeatable-read transaction exports its snapshot, pg_dump adopts it
    (`--snapshot`), and the rows are counted in that transaction once pg_dump is
    done: writes meanwhile — Dagster logs this very run's events into its storage
    as it goes — are in neither. (Counting only afterwards, the transaction holds no
    table lock while pg_dump runs, so pg_dump can never queue behind a rebuild that
    waits for it.)

    Names are resolved when used, not as of the snapshot: a table that dbt rebuilt
    aside and renamed in place after the snapshot would be dumped and counted from
    the new table, whose rows the snapshot cannot see. So when any name of the
    snapshot means another table by the end, the dump is taken again."""
    deadline = time.monotonic() + SNAPSHOT_PATIENCE_S
    while True:
        with connect(target.url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            (snapshot,) = conn.execute("select pg_export_snapshot()").fetchone()
            fd = _private_file(path)
            try:
                # Custom format: compressed, and pg_restore can pick objects from it.
                _run_tool(
                    pg_dump,
                    ["--format=custom", "--no-password", f"--snapshot={snapshot}"],
                    target.url,
                    stdout=fd,
                )
            finally:
                os.close(fd)
            try:
                counts = row_counts(conn)
                moved = _names_moved(conn)
            except psycopg.errors.UndefinedTable:  # dropped since the snapshot
                conn.rollback()
                moved = True
            conn.rollback()
        if not moved:
            return counts
        path.unlink()
        if time.monotonic() > deadline:
            raise DatabaseError(
                f"no consistent dump of {redact_url(target.url)} in {SNAPSHOT_PATIENCE_S:g} s:"
                " its tables kept being rebuilt (is a dbt build running?)"
            )
        time.sleep(1.0)


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
        counts = _dump(target, path, pg_dump)
        manifest["databases"].append(  # type: ignore[union-attr]
            {
                "purpose": target.purpose,
                "name": target.name,
                "source": redact_url(target.url),
                "file": target.file,
                "size_bytes": path.stat().st_size,
                "sha256": _sha256(path),
                **facts,
                "row_counts": counts,
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
    if manifest.get("format") not in READABLE_FORMATS:
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


# --- automated backups: one folder per backup, the newest kept ----------------------------
_COMPLETE = re.compile(r"^backup-\d{8}T\d{6}Z$")
_PARTIAL = re.compile(r"^backup-\d{8}T\d{6}Z\.partial$")
# A temporary folder this old is a crashed backup's, not one still being written.
STALE_PARTIAL = timedelta(days=1)


def backup_name(when: datetime) -> str:
    """`backup-YYYYMMDDTHHMMSSZ` (UTC): names sort in time order."""
    return f"backup-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def complete_backups(root: Path) -> list[Path]:
    """The complete backups under `root`, oldest first: named as ours and holding a
    manifest (written last, so a folder without one was never finished)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _COMPLETE.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_backup(root: Path) -> Path | None:
    backups = complete_backups(root)
    return backups[-1] if backups else None


def prune_backups(root: Path, keep: int, now: datetime | None = None) -> list[Path]:
    """Delete the complete backups beyond the newest `keep`, and the folders of backups
    that never completed once they are older than a day (a younger one may still be
    being written). Anything else in `root` is left alone. Returns what was deleted."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the newest backup must be kept")
    now = now or datetime.now(UTC)
    complete = complete_backups(root)
    removed = complete[: max(len(complete) - keep, 0)]
    kept = set(complete)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        unfinished = _PARTIAL.match(path.name) or (_COMPLETE.match(path.name) and path not in kept)
        if unfinished and path.is_dir():
            age = now - datetime.fromtimestamp(path.stat().st_mtime, UTC)
            if age > STALE_PARTIAL:
                removed.append(path)
    for path in removed:
        shutil.rmtree(path)
    return removed


@dataclass
class RotatedBackup:
    folder: Path
    manifest: dict[str, object]
    removed: list[Path]

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())


def rotated_backup(
    platform_url: str, root: Path, keep: int, now: datetime | None = None
) -> RotatedBackup:
    """A new backup in `root/backup-<UTC time>`, then the retention (`prune_backups`).

    Written as `<name>.partial` and renamed when complete, so a backup that crashed
    is never taken for the latest; the older backups are only deleted once the new
    one is complete."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the newest backup must be kept")
    name = backup_name(now or datetime.now(UTC))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    final, partial = root / name, root / f"{name}.partial"
    if final.exists() or partial.exists():
        raise DatabaseError(f"{final} exists already: one backup per second at most")
    try:
        manifest = backup(platform_url, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(final)
    return RotatedBackup(final, manifest, prune_backups(root, keep, now))


# --- the restore drill ---------------------------------------------------------------------
# Where the drill restores: a database of its own on the platform's server, dropped after.
DRILL_DATABASE = "attribution_restore_drill"
_DRILL_LOCK = "attribution.restore_drill"  # one drill at a time per server: one scratch name
_SYSTEM_DATABASES = {"postgres", "template0", "template1"}


@dataclass
class DrillReport:
    """What the drill found; it passed when there are no problems."""

    backup: Path | None = None
    created_at: str = ""
    age_hours: float | None = None
    databases: list[str] = field(default_factory=list)
    tables_compared: int = 0
    rows_compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and not self.mismatches


def _compare(purpose: str, expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    mismatches = []
    for table in sorted(expected.keys() | restored.keys()):
        want, got = expected.get(table), restored.get(table)
        if want != got:
            mismatches.append(
                f"{purpose} {table}: {'absent' if want is None else want} rows in the backup,"
                f" {'absent' if got is None else got} restored"
            )
    return mismatches


def _scratch(url: str, entry: dict[str, object]) -> None:
    """An empty scratch database no other login can open: it will hold every
    organization's rows."""
    name = sql.Identifier(conninfo_params(url)["dbname"])
    with _maintenance(url) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(
            sql.SQL("create database {} template template0 encoding {}").format(
                name, sql.Literal(entry.get("encoding") or "UTF8")
            )
        )
        conn.execute(sql.SQL("revoke all on database {} from public").format(name))


def _drop(url: str) -> None:
    name = sql.Identifier(conninfo_params(url)["dbname"])
    with _maintenance(url) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))


def restore_drill(
    platform_url: str,
    root: Path,
    max_age: timedelta,
    scratch: str = DRILL_DATABASE,
    now: datetime | None = None,
) -> DrillReport:
    """Prove the latest backup under `root` can be restored and is complete.

    Fails (problems) when there is no complete backup, when the latest is older
    than `max_age`, when a file does not match its checksum, when an archive does
    not restore, and (mismatches) when a table's rows differ from the manifest's
    count. Each archive is restored, one after the other, into the database
    `scratch` on the platform's server — never into a database the platform or
    the backup names — without owners or privileges (no role of the server is
    created, altered or granted anything), then the database is dropped.
    """
    clock = time.perf_counter()
    now = now or datetime.now(UTC)
    report = DrillReport(backup=latest_backup(root))
    if report.backup is None:
        report.problems.append(f"no complete backup in {root}")
        return report
    try:
        manifest = read_manifest(report.backup)
    except (DatabaseError, ValueError, KeyError) as exc:
        report.problems.append(f"{report.backup.name}: {exc}")
        report.seconds = round(time.perf_counter() - clock, 2)
        return report
    live = {t.name for t in targets(platform_url)} | {e["name"] for e in manifest["databases"]}
    if scratch in live | _SYSTEM_DATABASES:
        raise DatabaseError(f"the restore drill refuses to use {scratch!r}: a database in use")
    report.created_at = manifest["created_at"]
    age = now - datetime.fromisoformat(manifest["created_at"])
    report.age_hours = round(age.total_seconds() / 3600, 2)
    if age > max_age:
        report.problems.append(
            f"the latest backup, {report.backup.name}, is {report.age_hours} h old:"
            f" more than the {max_age.total_seconds() / 3600:g} h its schedule allows"
        )
    roles = {
        s.role for s in parse_roles((report.backup / ROLES_FILE).read_text()) if s.kind == "create"
    }
    if roles != set(manifest["roles"]["roles"]):
        report.problems.append(f"{ROLES_FILE} does not hold the roles the manifest lists")
    major = max(_server_major(platform_url), int(manifest["server_version_major"]))
    pg_restore = pg_client_tool("pg_restore", major)
    url = _with_database(platform_url, scratch)
    with _maintenance(platform_url) as lock:
        lock.execute("select pg_advisory_lock(hashtext(%s))", [_DRILL_LOCK])
        for entry in manifest["databases"]:
            purpose = entry["purpose"]
            report.databases.append(f"{purpose}: {entry['name']}")
            if "row_counts" not in entry:
                report.problems.append(
                    f"{purpose}: the backup (format {manifest['format']}) has no row counts"
                    " to compare with"
                )
            _scratch(url, entry)
            try:
                _run_tool(
                    pg_restore,
                    ["--single-transaction", "--exit-on-error", "--no-password",
                     "--no-owner", "--no-privileges", str(report.backup / entry["file"])],
                    url,
                )  # fmt: skip
                with connect(url) as conn:
                    restored = row_counts(conn)
            except DatabaseError as exc:
                report.problems.append(f"{purpose}: {entry['file']} does not restore: {exc}"[:2000])
                continue
            finally:
                _drop(url)
            expected = entry.get("row_counts")
            if expected is not None:
                report.tables_compared += len(expected)
                report.rows_compared += sum(expected.values())
                report.mismatches += _compare(purpose, expected, restored)
    report.seconds = round(time.perf_counter() - clock, 2)
    return report
