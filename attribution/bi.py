"""BI access: the read-only role `bi_reader` (created by migration 0002)."""

from __future__ import annotations

import getpass
import os

from psycopg import sql

from attribution.database import connect
from attribution.migrations import migrate

PASSWORD_ENV = "BI_READER_PASSWORD"


def set_reader_password(url: str, password: str | None = None) -> None:
    """Give bi_reader a password: the argument, else $BI_READER_PASSWORD, else a prompt.

    The password never goes to the repository, logs or shell history.
    """
    password = password or os.environ.get(PASSWORD_ENV) or getpass.getpass("bi_reader password: ")
    if len(password) < 12:
        raise ValueError("choose a bi_reader password of at least 12 characters")
    migrate(url)
    with connect(url, autocommit=True) as conn:
        # ALTER ROLE takes no bind parameters; sql.Literal quotes the value safely.
        conn.execute(
            sql.SQL("alter role bi_reader with login password {}").format(sql.Literal(password))
        )
