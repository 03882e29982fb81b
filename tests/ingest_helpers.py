"""Small helpers for ingestion tests: write landing files, read tables back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion.contracts import DEALS, ENTITIES

RAW_TABLES = (*(e.table for e in ENTITIES), "quarantine")

DEAL_HEADER = list(DEALS.field_names)


def good_deal(**overrides: str) -> dict[str, str]:
    row = {
        "deal_id": "d1",
        "org_id": "o1",
        "name": "Deal",
        "amount": "100.00",
        "currency": "USD",
        "status": "won",
        "created_at": "2026-01-01T00:00:00Z",
        "closed_at": "2026-01-05T00:00:00Z",
        "updated_at": "2026-01-05T00:00:00Z",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# Row builders for hand-made CRM exports (docs/contract.md §2): every field as text, as a CSV holds it.
T = "2026-03-{:02d}T{:02d}:00:00Z"


def deal(deal_id: str, status: str, amount: str, currency: str, closed: str, updated: str,
         org: str = "o1", created: str = T.format(1, 9)) -> dict[str, str]:  # fmt: skip
    return {
        "deal_id": deal_id, "org_id": org, "name": f"Deal {deal_id}", "amount": amount,
        "currency": currency, "status": status, "created_at": created, "closed_at": closed,
        "updated_at": updated,
    }  # fmt: skip


def tp(
    tp_id: str, deal_id: str, partner: str, kind: str, at: str, org: str = "o1"
) -> dict[str, str]:
    return {"touchpoint_id": tp_id, "org_id": org, "deal_id": deal_id, "partner_id": partner,
            "touchpoint_type": kind, "occurred_at": at}  # fmt: skip


def partner(
    pid: str, org: str, updated: str = "2026-01-01", status: str = "active"
) -> dict[str, str]:
    return {"partner_id": pid, "org_id": org, "name": f"Partner {pid}", "partner_type": "reseller",
            "status": status, "updated_at": updated}  # fmt: skip


def write_batch(
    landing: Path, label: str, batch: dict[str, list[dict[str, str]]], fmt: str = "csv"
) -> list[Path]:
    """One landing file per entity, `<entity>_<label>.<fmt>`; in JSONL an empty field is null."""
    written = []
    for entity, rows in batch.items():
        path = landing / f"{entity}_{label}.{fmt}"
        if fmt == "csv":
            write_csv(path, rows)
        else:
            write_jsonl(path, [{k: (v if v != "" else None) for k, v in r.items()} for r in rows])
        written.append(path)
    return written


def fetch(url: str, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params or []).fetchall()  # type: ignore[arg-type]


def table_snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every raw table and the ledger, in a stable order."""
    snapshot = {}
    with psycopg.connect(url) as conn:
        for table in (*RAW_TABLES, "ingest_batches"):
            query = sql.SQL("select * from raw.{} order by 1, 2").format(sql.Identifier(table))
            snapshot[table] = conn.execute(query).fetchall()
    return snapshot


def counts(url: str) -> dict[str, int]:
    result = {}
    with psycopg.connect(url) as conn:
        for table in RAW_TABLES:
            query = sql.SQL("select count(*) from raw.{}").format(sql.Identifier(table))
            result[table] = conn.execute(query).fetchone()[0]
    return result
