"""A tenant's EXPLAIN cannot tell another organization's values from values that exist nowhere.

An organization login (made with `platform_core.bi_access.grant_org`) reads the marts under
row-level security. Comparisons of text, dates, timestamps and integers are
leakproof, so PostgreSQL may use a tenant's `deal_id = 'x'` as an index condition
and apply the security policy afterwards: `EXPLAIN ANALYZE` then shows a row
found and removed (`Rows Removed by Filter: 1`) when 'x' is another
organization's deal, and nothing when 'x' does not exist. Planner estimates leak
the same way, through statistics gathered over all organizations.

For every column of every index on every table in schema `marts` (read from the
catalog, so a new index is covered without editing this file) the tests run the
same query twice as the tenant, once with a value that only other organizations
have and once with a value that exists nowhere, and require the two outputs to be
identical: plan shape, actual rows, rows removed, index searches and, in their
own tests, the planner's estimates and the pages touched. Each probe runs under
the default planner settings and with sequential / bitmap scans disabled, which a
tenant may set itself. A column with no value that only other organizations have
cannot be probed; it must not lead an index. Mart indexes and tenants, in
docs/attribution.md, explains the rule these tests hold the marts to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from platform_core.bi_access import grant_org
from synthetic_crm import generate
from tests.dbt_harness import dbt, ingest
from tests.ingest_helpers import good_deal, write_csv

PASSWORD = "leak-probe-test-password"
ORG, OTHER = "org_00001", "org_00002"
# dbt vars: data-driven weights from a few paths, so the small dataset fills every mart.
LOW_PATH_MINIMUM = '{"data_driven_min_paths": 5}'
ROLE = "leak_probe_bi"
# What a tenant may set in its own session to steer the planner towards an index.
PLANNER_SETTINGS = (
    {},
    {"enable_seqscan": "off"},
    {"enable_seqscan": "off", "enable_bitmapscan": "off"},
)
# Values no row has, per column type: far outside the generated data.
NOWHERE = {
    "text": ("zzzz_nowhere_1", "zzzz_nowhere_2"),
    "date": ("2999-01-01", "2999-12-31"),
    "timestamp with time zone": ("2999-01-01 00:00:00+00", "2999-12-31 00:00:00+00"),
    "bigint": ("9000000000000000001", "9000000000000000002"),
    "integer": ("2000000001", "2000000002"),
    "numeric": ("900000000000000001", "900000000000000002"),
    "boolean": None,  # both values usually exist; no "nowhere" value to compare with
}


def login_url(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=f"{role}:{quote(PASSWORD)}@{parts.hostname}:{parts.port}")
    )


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    landing = tmp_path_factory.mktemp("landing")
    # Into a second month, with a low path minimum: attribution_channel_weights has rows.
    generate(landing, orgs=4, days=35, seed=11)
    ingest(db_url, landing)
    dbt(db_url, tmp_path_factory.mktemp("dbt"), "run", "--vars", LOW_PATH_MINIMUM)
    grant_org(db_url, ORG, ROLE, PASSWORD)
    # A won deal per organization loaded after the build: the backlog view lists them.
    pending = tmp_path_factory.mktemp("pending")
    write_csv(
        pending / "deals_pending.csv",
        [good_deal(deal_id=f"pending_{org}", org_id=org) for org in (ORG, OTHER)],
    )
    ingest(db_url, pending)
    return db_url


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    type: str


def indexed_columns(conn: psycopg.Connection) -> list[Column]:
    """Every table column any index in schema marts uses, as a key or inside an expression."""
    rows = conn.execute(
        """
        select distinct c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_index as i
        join pg_class as c on c.oid = i.indrelid
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_attribute as a on a.attrelid = c.oid
        where n.nspname = 'marts'
          and (
              a.attnum = any (i.indkey::int2[])
              or exists (
                  select from pg_depend as d
                  where d.classid = 'pg_class'::regclass and d.objid = i.indexrelid
                    and d.refclassid = 'pg_class'::regclass and d.refobjid = c.oid
                    and d.refobjsubid = a.attnum
              )
          )
          and a.attnum > 0
        order by 1, 2
        """
    ).fetchall()
    return [Column(*row) for row in rows]


def other_org_value(conn: psycopg.Connection, column: Column) -> str | None:
    """The value of `column` most common among other organizations' rows that no row of
    ORG has (most common: the one statistics are most likely to single out)."""
    query = sql.SQL(
        """
        select {col}::text from marts.{table}
        where org_id <> %(org)s and {col} is not null
          and {col} not in (select {col} from marts.{table} where org_id = %(org)s and {col} is not null)
        group by {col} order by count(*) desc, {col} limit 1
        """
    ).format(col=sql.Identifier(column.name), table=sql.Identifier(column.table))
    row = conn.execute(query, {"org": ORG}).fetchone()
    return row[0] if row else None


def other_org_range(conn: psycopg.Connection, column: Column, low: str) -> tuple[str, str]:
    """[low, high]: the run of values from `low` up to (not including) ORG's next value."""
    query = sql.SQL(
        """
        select max({col})::text from marts.{table}
        where {col} >= {low}::{type}
          and not exists (
              select from marts.{table} as own
              where own.org_id = %(org)s and own.{col} >= {low}::{type} and own.{col} <= {table}.{col}
          )
        """
    ).format(
        col=sql.Identifier(column.name),
        table=sql.Identifier(column.table),
        low=sql.Literal(low),
        type=sql.SQL(column.type),
    )
    return low, conn.execute(query, {"org": ORG}).fetchone()[0]


@dataclass(frozen=True)
class Probe:
    label: str
    query: sql.Composed  # with another organization's value(s)
    control: sql.Composed  # the same query with values that exist nowhere
    values: tuple[str, ...] = ()  # both sets of values, blanked out of the plans


def predicate(column: Column, kind: str, values: tuple[str, ...]) -> sql.Composed:
    col = sql.Identifier(column.name)
    typed = [sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(column.type)) for v in values]
    if kind == "=":
        return sql.SQL("{} = {}").format(col, typed[0])
    if kind == "between":
        return sql.SQL("{} >= {} and {} <= {}").format(col, typed[0], col, typed[1])
    if kind == "^@":  # starts_with: leakproof, and a btree range under the C collation
        return sql.SQL("{} ^@ {}").format(col, typed[0])
    raise ValueError(kind)


def probes(admin: psycopg.Connection) -> Iterator[Probe]:
    """Equality, range and prefix probes on each indexed column with a value only other
    organizations have, each paired with the same probe on a value that exists nowhere."""
    for column in indexed_columns(admin):
        nowhere = NOWHERE.get(column.type)
        value = other_org_value(admin, column)
        if nowhere is None or value is None:
            continue
        shapes: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
            ("=", (value,), nowhere[:1]),
            ("between", other_org_range(admin, column, value), nowhere),
        ]
        if column.type == "text" and not own_rows_start_with(admin, column, value):
            shapes.append(("^@", (value,), ("zzzz_nowhere",)))
        for kind, values, control in shapes:
            yield Probe(
                f"{column.table}.{column.name} {kind} {values}",
                sql.SQL("select * from marts.{} where {}").format(
                    sql.Identifier(column.table), predicate(column, kind, values)
                ),
                sql.SQL("select * from marts.{} where {}").format(
                    sql.Identifier(column.table), predicate(column, kind, control)
                ),
                values + control,
            )


def own_rows_start_with(conn: psycopg.Connection, column: Column, prefix: str) -> bool:
    query = sql.SQL("select exists (select from marts.{} where org_id = %s and {} ^@ %s)").format(
        sql.Identifier(column.table), sql.Identifier(column.name)
    )
    return conn.execute(query, [ORG, prefix]).fetchone()[0]


def normalized(lines: list[str], values: tuple[str, ...]) -> str:
    """EXPLAIN text with the probe's values blanked (they differ by design) and
    buffer counts summed (hit or read depends on the cache, not on the data)."""
    out = []
    for line in lines:
        if line.startswith("Planning:"):
            break  # planning buffers depend on the session's catalog cache
        line = re.sub(r"'(?:[^']|'')*'", "'?'", line)
        for value in values:  # a numeric with a decimal point is printed bare
            line = re.sub(rf"(?<=[=<>] ){re.escape(value)}(?=\))", "'?'::numeric", line)
        buffers = re.search(r"Buffers: (.*)$", line)
        if buffers:
            touched = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", buffers.group(1)))
            line = line[: buffers.start()] + f"Buffers: {touched}"
        out.append(line)
    return "\n".join(out)


def explain(
    conn: psycopg.Connection, options: str, query: sql.Composed, values: tuple[str, ...]
) -> str:
    rows = conn.execute(sql.SQL("explain ({}) {}").format(sql.SQL(options), query)).fetchall()
    return normalized([row[0] for row in rows], values)


def differences(url: str, options: str) -> tuple[int, list[str]]:
    """(comparisons made: probes × planner settings, descriptions of those that differ)."""
    with psycopg.connect(url, autocommit=True) as admin:
        planned = list(probes(admin))
        # The backlog view (no indexes of its own) reads the raw deal versions.
        planned.append(
            Probe(
                "attribution_backlog.deal_id = another organization's pending deal",
                sql.SQL("select * from marts.attribution_backlog where deal_id = {}").format(
                    sql.Literal(f"pending_{OTHER}")
                ),
                sql.SQL("select * from marts.attribution_backlog where deal_id = {}").format(
                    sql.Literal("zzzz_nowhere_1")
                ),
            )
        )
    found = []
    with psycopg.connect(login_url(url, ROLE), autocommit=True) as tenant:
        for settings in PLANNER_SETTINGS:
            tenant.execute("reset all")
            for name, value in settings.items():
                tenant.execute(
                    sql.SQL("set {} = {}").format(sql.Identifier(name), sql.Literal(value))
                )
            for probe in planned:
                # Run the control first and last: a first execution can touch more pages
                # (catalog, hint bits), which must not count as a difference.
                explain(tenant, options, probe.control, probe.values)
                leaked = explain(tenant, options, probe.query, probe.values)
                control = explain(tenant, options, probe.control, probe.values)
                if leaked != control:
                    found.append(
                        f"{probe.label} {settings}:\n{leaked}\n--- vs nowhere ---\n{control}"
                    )
    return len(planned) * len(PLANNER_SETTINGS), found


def leading_columns(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """(table, column) of the first key column of every index in schema marts."""
    rows = conn.execute(
        """
        select c.relname, coalesce(a.attname, '<expression>')
        from pg_index as i
        join pg_class as c on c.oid = i.indrelid
        join pg_namespace as n on n.oid = c.relnamespace
        left join pg_attribute as a on a.attrelid = c.oid and a.attnum = i.indkey[0]
        where n.nspname = 'marts'
        """
    ).fetchall()
    return {(table, column) for table, column in rows}


def test_the_probes_cover_every_mart_table(built: str) -> None:
    """Every mart with an index is probed; a column that cannot be probed (ORG has
    every value of it, like status or attribution_model) leads no index, so what
    protects it is the org_id in front of it."""
    with psycopg.connect(built) as conn:
        columns = indexed_columns(conn)
        tables = {c.table for c in columns}
        planned = list(probes(conn))
        leading = leading_columns(conn)
        # The backlog probe asks about a deal that really is pending.
        pending = conn.execute(
            "select org_id from marts.attribution_backlog where deal_id = %s", [f"pending_{OTHER}"]
        ).fetchall()
    assert pending == [(OTHER,)]
    probed = {p.label.split(" ")[0] for p in planned}
    unprobed = {(c.table, c.name) for c in columns if f"{c.table}.{c.name}" not in probed}
    assert not unprobed & leading, unprobed & leading
    assert tables >= {
        "fct_deals",
        "fct_partner_attribution",
        "partner_performance",
        "org_daily_metrics",
        "dim_organizations",
    }
    assert {p.label.split(".")[0] for p in planned} == tables
    assert any(p.label.startswith("fct_deals.org_id =") for p in planned)


def test_index_probes_reveal_nothing(built: str) -> None:
    """Plan, actual rows, rows removed by filters, index searches: the same."""
    compared, found = differences(built, "analyze, buffers off, costs off, timing off, summary off")
    assert compared > 30
    assert not found, f"{len(found)} of {compared} comparisons differ:\n\n" + "\n\n".join(found)


def test_buffer_counts_reveal_nothing(built: str) -> None:
    """Pages touched (EXPLAIN's BUFFERS, on by default with ANALYZE): the same."""
    compared, found = differences(built, "analyze, buffers on, costs off, timing off, summary off")
    assert not found, f"{len(found)} of {compared} comparisons differ:\n\n" + "\n\n".join(found)


def test_estimates_reveal_nothing(built: str) -> None:
    """Row estimates come from statistics over all organizations; a tenant's must not
    depend on which other organization's value it asks about."""
    compared, found = differences(built, "costs on")
    assert not found, f"{len(found)} of {compared} estimates differ:\n\n" + "\n\n".join(found)


def test_statistics_hold_no_values(built: str) -> None:
    """Even after an ANALYZE (autovacuum runs them whenever it likes), no mart column
    has a most-common-values list or histogram: at most a count of distinct values."""
    with psycopg.connect(built, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "select tablename from pg_tables where schemaname = 'marts' order by 1"
            )
        ]
        assert "fct_deals" in tables
        for table in tables:
            conn.execute(sql.SQL("analyze marts.{}").format(sql.Identifier(table)))
        with_values = conn.execute(
            """
            select tablename, attname from pg_stats
            where schemaname = 'marts'
              and (most_common_vals is not null or histogram_bounds is not null
                   or most_common_elems is not null or correlation is not null)
            """
        ).fetchall()
        counted = conn.execute(
            "select count(*) from pg_stats where schemaname = 'marts' and n_distinct is not null"
        ).fetchone()[0]
    assert with_values == []
    assert counted > 0  # the join keys' counts are kept for the models reading the marts


def test_tenant_sees_no_other_organization_id(built: str, tmp_path: Path) -> None:
    """A deal that moved from OTHER to ORG: nothing ORG can read names OTHER."""
    with psycopg.connect(built) as conn:
        moved, created = conn.execute(
            "select deal_id, created_at from marts.fct_deals where org_id = %s and status = 'won'"
            " order by deal_id limit 1",
            [OTHER],
        ).fetchone()
    write_csv(
        tmp_path / "deals_moved.csv",
        [good_deal(deal_id=moved, org_id=ORG, created_at=created.isoformat(),
                   closed_at="2026-02-01T00:00:00Z", updated_at="2030-01-01T00:00:00Z")],
    )  # fmt: skip
    ingest(built, tmp_path)
    dbt(built, tmp_path / "dbt", "run", "--vars", LOW_PATH_MINIMUM)
    with psycopg.connect(login_url(built, ROLE)) as tenant:
        marts = [
            name
            for (name,) in tenant.execute(
                "select c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace"
                " where n.nspname = 'marts' and c.relkind in ('r', 'v') order by 1"
            )
        ]
        assert "fct_deals" in marts
        underscored = tenant.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'marts' and column_name like '\\_%'"
        ).fetchall()
        assert underscored == []
        seen_moved = tenant.execute(
            "select count(*) from marts.fct_deals where deal_id = %s", [moved]
        ).fetchone()[0]
        assert seen_moved == 1
        for name in marts:
            text = tenant.execute(
                sql.SQL("select coalesce(string_agg(t::text, ' '), '') from marts.{} as t").format(
                    sql.Identifier(name)
                )
            ).fetchone()[0]
            assert OTHER not in text, name
    with psycopg.connect(built) as conn:
        history = conn.execute(
            "select org_ids from intermediate.int_deals__mart_state where deal_id = %s", [moved]
        ).fetchone()[0]
    assert history == sorted([ORG, OTHER])  # the history is kept, where BI cannot read it
    with (
        psycopg.connect(login_url(built, ROLE)) as tenant,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        tenant.execute("select * from intermediate.int_deals__mart_state")
