"""The input contract (ingestion/contracts.py) against the raw tables the migrations build.

The loader writes each entity's fields into `raw.<entity>` by name; a field added,
renamed or re-typed in the contract without a migration (or the other way round)
would fail every load of that entity, or store values the contract does not mean.
Read from the catalog of a freshly migrated database.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest

from ingestion.contracts import (
    COMMISSION_PLANS,
    DEALS,
    ENTITIES,
    PARTNERS,
    RAW_BOOKKEEPING_COLUMNS,
    Entity,
    Field,
    Kind,
)


def _columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, bool]]:
    """column -> (type with its modifiers, not null); empty when there is no such table.

    From pg_attribute rather than information_schema.columns, which leaves out the
    modifiers: numeric(12,2) would round and timestamptz(0) truncate what the
    contract accepts (18 decimal places, microseconds)."""
    rows = conn.execute(
        "select attname, format_type(atttypid, atttypmod), attnotnull from pg_attribute"
        " where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped",
        [f"raw.{table}"],
    ).fetchall()
    return {name: (pg_type, not_null) for name, pg_type, not_null in rows}


def _type_name(conn: psycopg.Connection, type_name: str) -> str:
    """How PostgreSQL writes a type (`timestamptz` is `timestamp with time zone`)."""
    return conn.execute("select format_type(%s::regtype, null)", [type_name]).fetchone()[0]


def mismatches(conn: psycopg.Connection, entity: Entity) -> list[str]:
    """Every way `raw.<entity>` differs from the contract's entity plus the bookkeeping."""
    columns = _columns(conn, entity.table)
    if not columns:
        return [f"raw.{entity.table} does not exist"]
    # name -> (type, not null): the contract's fields, then the bookkeeping columns.
    expected = {f.name: (f.raw_type, f.raw_not_null) for f in entity.fields}
    expected.update((name, (pg_type, True)) for name, pg_type in RAW_BOOKKEEPING_COLUMNS.items())
    found = []
    for name in sorted(columns.keys() - expected.keys()):
        found.append(f"raw.{entity.table}.{name}: a column the contract does not know")
    for name, (pg_type, not_null) in expected.items():
        where = f"raw.{entity.table}.{name}"
        if name not in columns:
            found.append(f"{where}: missing")
            continue
        column_type, is_not_null = columns[name]
        if column_type != _type_name(conn, pg_type):
            found.append(f"{where}: {column_type}, the contract needs {pg_type}")
        if is_not_null != not_null:
            actual = "not null" if is_not_null else "nullable"
            wanted = "always set" if not_null else "may be empty"
            found.append(f"{where}: {actual}, the contract says {wanted}")
    return found


@pytest.fixture(scope="module")
def conn(db_url: str):
    with psycopg.connect(db_url) as connection:
        yield connection


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.name)
def test_raw_table_matches_the_contract(conn: psycopg.Connection, entity: Entity) -> None:
    assert mismatches(conn, entity) == []


def test_raw_schema_holds_only_the_entities_and_the_ledger(conn: psycopg.Connection) -> None:
    tables = {
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        )
    }
    assert tables == {e.table for e in ENTITIES} | {"ingest_batches", "quarantine"}


def _with_field(entity: Entity, field_name: str, **changes: object) -> Entity:
    fields = tuple(replace(f, **changes) if f.name == field_name else f for f in entity.fields)
    return replace(entity, fields=fields)


@pytest.mark.parametrize(
    "changed, expected",
    [
        (_with_field(DEALS, "amount", name="value"), ["raw.deals.amount: a column", "raw.deals.value: missing"]),
        (_with_field(DEALS, "name", required=True), ["raw.deals.name: nullable"]),
        (_with_field(PARTNERS, "status", default=None), ["raw.partners.status: not null"]),
        (_with_field(DEALS, "closed_at", kind=Kind.DATE), ["raw.deals.closed_at: timestamp with time zone"]),
        (_with_field(DEALS, "currency", kind=Kind.AMOUNT), ["raw.deals.currency: text"]),
        (replace(DEALS, fields=(*DEALS.fields, Field("region"))), ["raw.deals.region: missing"]),
        (replace(DEALS, name="opportunities"), ["raw.opportunities does not exist"]),
        (_with_field(COMMISSION_PLANS, "holding_days", kind=Kind.FRACTION),
         ["raw.commission_plans.holding_days: integer"]),
        (_with_field(COMMISSION_PLANS, "rate", kind=Kind.COUNT), ["raw.commission_plans.rate: numeric"]),
    ],
    ids=["renamed", "now-required", "default-dropped", "retyped", "text-to-amount", "added", "new-entity",
         "count-to-fraction", "fraction-to-count"],
)  # fmt: skip
def test_a_contract_change_without_a_migration_is_caught(
    conn: psycopg.Connection, changed: Entity, expected: list[str]
) -> None:
    found = mismatches(conn, changed)
    assert len(found) == len(expected), found
    for line, start in zip(sorted(found), sorted(expected), strict=True):
        assert line.startswith(start), (line, start)


@pytest.mark.parametrize(
    "field_name, after",
    [("effective_to", "effective_until"), ("effective_to", "updated_at"), ("org_id", "plan_id")],
)
def test_an_order_rule_must_name_a_field_of_its_typed_kind(field_name: str, after: str) -> None:
    """`after` compares typed values: a missing field, another kind (a timestamp is not
    a date) or text is refused when the contract is declared, not when a file arrives."""
    with pytest.raises(ValueError, match=f"after='{after}'"):
        _with_field(COMMISSION_PLANS, field_name, after=after)
