"""BI access: the read-only role `bi_reader` and per-organization BI logins.

`bi_reader` (migration 0002) reads every row of the marts. A login made by
`grant_org` is a member of `bi_org_reader` (migration 0003) and reads only the
rows of the organizations granted to it: row-level security on every mart
matches `org_id` against `security.bi_org_grants` for the session's login.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from platform_core.database import connect
from platform_core.migrations import migrate

PASSWORD_ENV = "BI_READER_PASSWORD"
ORG_PASSWORD_ENV = "BI_ORG_PASSWORD"
MIN_PASSWORD_LENGTH = 12
# Lower-case, unquoted-identifier shape: the name is typed into BI tools and
# connection strings, and a plain name cannot smuggle SQL or look like another role.
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{2,62}")
RESERVED_ROLES = {"bi_reader", "bi_org_reader", "postgres", "embedded_postgres", "public"}


class AccessError(ValueError):
    """A BI access request that must not be carried out (bad name, unsafe role)."""


def _password(explicit: str | None, env: str, prompt: str) -> str:
    password = explicit or os.environ.get(env) or getpass.getpass(prompt)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccessError(f"choose a password of at least {MIN_PASSWORD_LENGTH} characters")
    return password


def set_reader_password(url: str, password: str | None = None) -> None:
    """Give bi_reader a password: the argument, else $BI_READER_PASSWORD, else a prompt.

    The password never goes to the repository, logs or shell history.
    """
    password = _password(password, PASSWORD_ENV, "bi_reader password: ")
    migrate(url)
    with connect(url, autocommit=True) as conn:
        # ALTER ROLE takes no bind parameters; sql.Literal quotes the value safely.
        conn.execute(
            sql.SQL("alter role bi_reader with login password {}").format(sql.Literal(password))
        )


@dataclass(frozen=True)
class TenantLimits:
    """What one organization login may use of the server (docs/bi.md).

    A tenant must not be able to exhaust or block the server: a connection cap
    per login, statement and idle timeouts, a cap on temporary files, modest
    memory. Timeouts are role defaults a session may lower but could also raise
    (PostgreSQL lets any session SET them); `enforce_tenant_limits` ends sessions
    that overstay them, whatever they set. `temp_file_limit` is a superuser
    setting: a tenant cannot raise it.
    """

    connection_limit: int = 5
    statement_timeout_ms: int = 30_000
    idle_in_transaction_timeout_ms: int = 30_000
    idle_session_timeout_ms: int = 600_000
    temp_file_limit_kb: int = 1_048_576
    work_mem_kb: int = 16_384

    def settings(self, superuser: bool) -> dict[str, int]:
        found: dict[str, int] = {
            "statement_timeout": self.statement_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_ms,
            "idle_session_timeout": self.idle_session_timeout_ms,
            "work_mem": self.work_mem_kb,
        }
        if superuser:
            found["temp_file_limit"] = self.temp_file_limit_kb
        return found


@dataclass
class GrantReport:
    """What `grant_org` did: whether the org is loaded yet, and what an operator must fix."""

    org_known: bool
    created: bool
    password_set: bool
    warnings: list[str] = field(default_factory=list)


def _check_role_name(conn: psycopg.Connection, role: str) -> None:
    if not ROLE_NAME.fullmatch(role) or role in RESERVED_ROLES or role.startswith("pg_"):
        raise AccessError(
            f"role name {role!r}: use 3-63 lower-case letters, digits or _, starting with a"
            " letter or _, not a reserved or pg_ name"
        )
    keyword = conn.execute(
        "select catdesc from pg_get_keywords() where word = %s", [role]
    ).fetchone()
    if keyword:
        raise AccessError(
            f"role name {role!r} is an SQL keyword ({keyword[0].lower()}); choose another name"
        )


def _is_superuser(conn: psycopg.Connection) -> bool:
    """Whether the platform's role may change server-wide settings (catalog ACLs, SUSET GUCs)."""
    return bool(
        conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
    )


def _apply_limits(conn: psycopg.Connection, role: str, limits: TenantLimits) -> None:
    superuser = _is_superuser(conn)
    ident = sql.Identifier(role)
    conn.execute(
        sql.SQL("alter role {} connection limit {}").format(
            ident, sql.Literal(limits.connection_limit)
        )
    )
    for name, value in limits.settings(superuser).items():
        conn.execute(
            sql.SQL("alter role {} set {} = {}").format(
                ident, sql.Identifier(name), sql.Literal(value)
            )
        )


def _close_other_databases(conn: psycopg.Connection, role: str) -> list[str]:
    """No CONNECT (so no temporary objects) for tenant logins on the server's other databases.

    PostgreSQL grants CONNECT and TEMPORARY on every database to PUBLIC and has
    no per-role deny. Where the platform may (it owns the database, or is a
    superuser), PUBLIC loses both and the roles that could connect before keep
    CONNECT by an explicit grant; elsewhere the returned warning names the
    database and the statement for its owner.
    """
    warnings: list[str] = []
    superuser = _is_superuser(conn)
    others = conn.execute(
        """
        select d.datname, pg_get_userbyid(d.datdba) = current_user
        from pg_database as d
        where d.datallowconn and d.datname <> current_database()
          and has_database_privilege(%s, d.oid, 'CONNECT')
        order by d.datname
        """,
        [role],
    ).fetchall()
    keep = [
        name
        for (name,) in conn.execute(
            """
            select r.rolname from pg_roles as r
            where r.rolcanlogin and not r.rolsuper
              and not pg_has_role(r.oid, 'bi_org_reader', 'MEMBER')
            order by r.rolname
            """
        )
    ]
    for database, owned in others:
        db = sql.Identifier(database)
        if not (superuser or owned):
            warnings.append(
                f"tenant logins can connect to database {database!r}; its owner should run:"
                f" revoke connect, temporary on database {database} from public"
            )
            continue
        for keeper in keep:
            conn.execute(
                sql.SQL("grant connect on database {} to {}").format(db, sql.Identifier(keeper))
            )
        conn.execute(sql.SQL("revoke connect, temporary on database {} from public").format(db))
    return warnings


def _lock_warnings(conn: psycopg.Connection, role: str) -> list[str]:
    (can_lock,) = conn.execute(
        "select has_function_privilege(%s, 'pg_catalog.pg_advisory_lock(bigint)', 'EXECUTE')",
        [role],
    ).fetchone()
    if not can_lock:
        return []
    return [
        "tenant logins can take advisory locks (the platform is not a superuser here); a"
        " superuser should run the statements in docs/bi.md, 'Server-wide protections'"
    ]


def grant_org(
    url: str,
    org_id: str,
    role: str,
    password: str | None = None,
    *,
    reset_password: bool = False,
    limits: TenantLimits | None = None,
) -> GrantReport:
    """Create login `role`, or add `org_id` to it, so that it reads only its organizations.

    A new login needs a password (argument, $BI_ORG_PASSWORD or a prompt). An
    existing organization login keeps its password unless `reset_password`. A
    role that exists but is not an organization login made here is refused:
    widening an administrator or the platform-wide `bi_reader` into a tenant
    login would be a silent leak. The login's limits are (re)applied each time.
    """
    limits = limits or TenantLimits()
    if not org_id or len(org_id) > 200:
        raise AccessError(f"organization id {org_id!r} is empty or too long")
    migrate(url)
    with connect(url) as conn, conn.transaction():
        _check_role_name(conn, role)
        conn.execute("select security.forget_dropped_logins()")
        existing = conn.execute(
            """
            select r.rolsuper or r.rolcreaterole or r.rolcreatedb or r.rolbypassrls
                       or r.rolreplication,
                   pg_has_role(r.oid, 'bi_org_reader', 'MEMBER'),
                   pg_has_role(r.oid, 'bi_reader', 'MEMBER')
            from pg_roles as r where r.rolname = %s
            """,
            [role],
        ).fetchone()
        ident = sql.Identifier(role)
        password_set = False
        if existing is None:
            secret = _password(password, ORG_PASSWORD_ENV, f"password for {role}: ")
            conn.execute(
                sql.SQL(
                    "create role {} login nosuperuser nocreatedb nocreaterole noreplication"
                    " nobypassrls password {} in role bi_org_reader"
                ).format(ident, sql.Literal(secret))
            )
            password_set = True
        else:
            privileged, org_member, reader_member = existing
            if privileged or reader_member or not org_member:
                raise AccessError(
                    f"role {role!r} already exists and is not an organization BI login;"
                    " choose another name"
                )
            if reset_password:
                secret = _password(password, ORG_PASSWORD_ENV, f"new password for {role}: ")
                conn.execute(
                    sql.SQL("alter role {} with password {}").format(ident, sql.Literal(secret))
                )
                password_set = True
            conn.execute(sql.SQL("alter role {} with login").format(ident))
        _apply_limits(conn, role, limits)
        conn.execute(
            """
            insert into security.bi_org_grants (role_oid, role_name, org_id)
            select oid, rolname, %s from pg_roles where rolname = %s
            on conflict do nothing
            """,
            [org_id, role],
        )
        # Its own database by name: PUBLIC's CONNECT may be revoked here by another
        # platform database's grant-org on the same server.
        conn.execute(
            sql.SQL("grant connect on database {} to {}").format(
                sql.Identifier(conn.info.dbname), ident
            )
        )
        warnings = _close_other_databases(conn, role) + _lock_warnings(conn, role)
        known = conn.execute(
            "select exists (select from raw.organizations where org_id = %s)", [org_id]
        ).fetchone()[0]
    return GrantReport(bool(known), existing is None, password_set, warnings)


def revoke_org(url: str, org_id: str, role: str) -> int:
    """Remove `org_id` from login `role`; a login left with no organization can no longer log in."""
    migrate(url)
    with connect(url) as conn, conn.transaction():
        removed = conn.execute(
            "delete from security.bi_org_grants where role_name = %s and org_id = %s",
            [role, org_id],
        ).rowcount
        remaining = conn.execute(
            """
            select count(*) from security.bi_org_grants as grants
            inner join pg_roles as roles
                on roles.oid = grants.role_oid and roles.rolname = grants.role_name
            where roles.rolname = %s
            """,
            [role],
        ).fetchone()[0]
        is_org_login = conn.execute(
            "select pg_has_role(oid, 'bi_org_reader', 'MEMBER') and not rolsuper"
            " from pg_roles where rolname = %s",
            [role],
        ).fetchone()
        if remaining == 0 and is_org_login and is_org_login[0]:
            conn.execute(sql.SQL("alter role {} nologin").format(sql.Identifier(role)))
        if removed and is_org_login and is_org_login[0]:
            # Open sessions may hold plans made with the old list of organizations.
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                [role],
            )
    return removed


def _role_setting_ms(name: str) -> sql.Composable:
    """A tenant login's configured `name` in milliseconds (as `_apply_limits` stores it)."""
    return sql.SQL(
        """(select split_part(setting, '=', 2)::bigint
            from pg_db_role_setting as s, unnest(s.setconfig) as setting
            where s.setrole = a.usesysid and s.setdatabase = 0
              and starts_with(setting, {}) and split_part(setting, '=', 2) ~ '^[0-9]+$')"""
    ).format(sql.Literal(name + "="))


def enforce_tenant_limits(url: str, grace_ms: int = 5_000) -> list[str]:
    """End tenant sessions that overstay their login's limits; returns what was done.

    A session may SET its own statement or idle timeouts (PostgreSQL has no way
    to forbid it), so the timeouts `grant_org` sets are enforced here as well:
    a statement running past its login's statement_timeout (plus `grace_ms`) is
    cancelled, a transaction idle past idle_in_transaction_session_timeout is
    ended. Run by the Dagster sensor `tenant_session_watchdog` every few seconds.
    """
    query = sql.SQL(
        """
        with tenant_sessions as (
            select a.pid, a.usename, a.state, a.query_start, a.state_change,
                   {statement} as statement_ms, {idle} as idle_ms
            from pg_stat_activity as a
            where a.backend_type = 'client backend' and a.pid <> pg_backend_pid()
              and pg_has_role(a.usesysid, 'bi_org_reader', 'MEMBER')
              and not pg_has_role(a.usesysid, 'bi_reader', 'MEMBER')
        )
        select pid, usename,
               case when state = 'active' then 'cancelled a statement running since '
                    else 'ended a session idle in a transaction since ' end
                   || to_char(case when state = 'active' then query_start else state_change end,
                              'YYYY-MM-DD HH24:MI:SS'),
               case when state = 'active' then pg_cancel_backend(pid)
                    else pg_terminate_backend(pid) end
        from tenant_sessions
        where (state = 'active' and statement_ms > 0
               and now() - query_start > make_interval(secs => (statement_ms + %s) / 1000.0))
           or (state like 'idle in transaction%%' and idle_ms > 0
               and now() - state_change > make_interval(secs => (idle_ms + %s) / 1000.0))
        """
    ).format(
        statement=_role_setting_ms("statement_timeout"),
        idle=_role_setting_ms("idle_in_transaction_session_timeout"),
    )
    with connect(url, autocommit=True) as conn:
        rows = conn.execute(query, [grace_ms, grace_ms]).fetchall()
    return [f"{role} (pid {pid}): {what}" for pid, role, what, _ in rows]


def reattach_grants(url: str) -> int:
    """After a restore: point each grant at the role of its name, if that role is an
    organization login (roles re-created from the backup have new OIDs)."""
    with connect(url) as conn, conn.transaction():
        return conn.execute(
            """
            update security.bi_org_grants as grants
            set role_oid = roles.oid
            from pg_roles as roles
            where roles.rolname = grants.role_name and roles.oid <> grants.role_oid
              and pg_has_role(roles.oid, 'bi_org_reader', 'MEMBER')
              and not roles.rolsuper
            """
        ).rowcount
