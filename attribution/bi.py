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

from psycopg import sql

from attribution.database import connect
from attribution.migrations import migrate

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


def grant_org(url: str, org_id: str, role: str, password: str | None = None) -> bool:
    """Create (or update) login `role` that reads only `org_id`'s rows of the marts.

    Returns whether the organization is known to the raw data yet (granting an
    organization before its first export lands is allowed). A role that exists
    but is not an org login made here is refused: widening an administrator or
    the platform-wide `bi_reader` into a tenant login would be a silent leak.
    """
    if not ROLE_NAME.fullmatch(role) or role in RESERVED_ROLES or role.startswith("pg_"):
        raise AccessError(
            f"role name {role!r}: use 3-63 lower-case letters, digits or _, starting with a"
            " letter or _, not a reserved or pg_ name"
        )
    if not org_id or len(org_id) > 200:
        raise AccessError(f"organization id {org_id!r} is empty or too long")
    password = _password(password, ORG_PASSWORD_ENV, f"password for {role}: ")
    migrate(url)
    with connect(url) as conn, conn.transaction():
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
        if existing is None:
            conn.execute(
                sql.SQL(
                    "create role {} login nosuperuser nocreatedb nocreaterole noreplication"
                    " nobypassrls password {} in role bi_org_reader"
                ).format(ident, sql.Literal(password))
            )
        else:
            privileged, org_member, reader_member = existing
            if privileged or reader_member or not org_member:
                raise AccessError(
                    f"role {role!r} already exists and is not an organization BI login;"
                    " choose another name"
                )
            conn.execute(
                sql.SQL("alter role {} with login password {}").format(ident, sql.Literal(password))
            )
        conn.execute(
            "insert into security.bi_org_grants (role_name, org_id) values (%s, %s)"
            " on conflict do nothing",
            [role, org_id],
        )
        known = conn.execute(
            "select exists (select from raw.organizations where org_id = %s)", [org_id]
        ).fetchone()[0]
    return bool(known)


def revoke_org(url: str, org_id: str, role: str) -> int:
    """Remove `org_id` from login `role`; a login left with no organization can no longer log in."""
    migrate(url)
    with connect(url) as conn, conn.transaction():
        removed = conn.execute(
            "delete from security.bi_org_grants where role_name = %s and org_id = %s",
            [role, org_id],
        ).rowcount
        remaining = conn.execute(
            "select count(*) from security.bi_org_grants where role_name = %s", [role]
        ).fetchone()[0]
        is_org_login = conn.execute(
            "select pg_has_role(oid, 'bi_org_reader', 'MEMBER') and not rolsuper"
            " from pg_roles where rolname = %s",
            [role],
        ).fetchone()
        if remaining == 0 and is_org_login and is_org_login[0]:
            conn.execute(sql.SQL("alter role {} nologin").format(sql.Identifier(role)))
    return removed
