"""Helpers for the commission tests (docs/contract.md §8): hand-made rows, landing them
through the real loader, building with dbt, closing with the real `close_period`, and
reading the lines back.

A small, stable API (tests/test_commissions_*.py import it): row builders `org`,
`partner`, `deal`, `touch`, `plan`; `land`; `build` (every model), `build_lines` (the
commission marts and what they read, plus the §8.8 checks), `build_commissions` (after a
plan change or a close); `close`; `commission_checks`; `lines`, `statements`,
`ledger_rows`, `ledger_digest`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from commissions import OrgClose, Period, close_period
from tests.dbt_harness import build, dbt, ingest
from tests.ingest_helpers import write_batch

__all__ = [
    "LineKey",
    "build",
    "build_commissions",
    "build_lines",
    "close",
    "commission_checks",
    "deal",
    "land",
    "ledger_digest",
    "ledger_rows",
    "lines",
    "org",
    "partner",
    "plan",
    "statements",
    "touch",
]

# A line of fct_commission_lines: (org_id, period 'YYYY-MM', deal_id, partner_id, line_type).
LineKey = tuple[str, str, str, str, str]
# The two error-severity checks of docs/contract.md §8.8 (dbt singular tests).
CHECKS = ("assert_commission_lines_sum_to_due", "assert_closed_periods_match_the_ledger")


def org(org_id: str, name: str | None = None) -> dict[str, str]:
    return {"org_id": org_id, "name": name or f"Org {org_id}", "plan": "",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}  # fmt: skip


def partner(partner_id: str, org_id: str, name: str | None = None) -> dict[str, str]:
    return {"partner_id": partner_id, "org_id": org_id, "name": name or f"Partner {partner_id}",
            "partner_type": "reseller", "status": "active",
            "updated_at": "2025-01-01T00:00:00Z"}  # fmt: skip


def deal(deal_id: str, org_id: str, closed_at: str, amount: str = "1000.00",
         status: str = "won", created_at: str = "2026-01-05T09:00:00Z",
         updated_at: str = "2026-01-01T00:00:00Z") -> dict[str, str]:  # fmt: skip
    """A USD deal. A later version of it needs a later `updated_at`."""
    return {"deal_id": deal_id, "org_id": org_id, "name": f"Deal {deal_id}", "amount": amount,
            "currency": "USD", "status": status, "created_at": created_at,
            "closed_at": closed_at, "updated_at": updated_at}  # fmt: skip


def touch(touch_id: str, deal_id: str, partner_id: str, org_id: str,
          occurred_at: str = "2026-01-06T09:00:00Z", kind: str = "meeting") -> dict[str, str]:  # fmt: skip
    return {"touchpoint_id": touch_id, "org_id": org_id, "deal_id": deal_id,
            "partner_id": partner_id, "touchpoint_type": kind, "occurred_at": occurred_at}  # fmt: skip


def plan(plan_id: str, org_id: str, partner_id: str = "", model: str = "linear",
         rate: str = "0.10", effective_from: str = "2026-01-01", effective_to: str = "",
         holding_days: str = "0", updated_at: str = "2026-01-01T00:00:00Z") -> dict[str, str]:  # fmt: skip
    """A commission plan; holding 0 by default so a line's period is its deal's month."""
    return {"plan_id": plan_id, "org_id": org_id, "partner_id": partner_id,
            "attribution_model": model, "rate": rate, "effective_from": effective_from,
            "effective_to": effective_to, "holding_days": holding_days,
            "updated_at": updated_at}  # fmt: skip


ENTITY_ORDER = ("organizations", "partners", "deals", "touchpoints", "commission_plans")


def land(url: str, landing: Path, label: str, **batch: list[dict[str, str]]) -> None:
    """Write one CSV per entity given (`deals=[...]`, `commission_plans=[...]`) named
    `<entity>_<label>.csv` and load the folder with the real loader (nothing quarantined)."""
    unknown = set(batch) - set(ENTITY_ORDER)
    assert not unknown, f"no such entity: {sorted(unknown)}"
    ordered = {entity: batch[entity] for entity in ENTITY_ORDER if batch.get(entity)}
    landing.mkdir(parents=True, exist_ok=True)
    write_batch(landing, label, ordered)
    report = ingest(url, landing)
    assert report.count("refused") == 0 and report.total("rows_quarantined") == 0, report.lines()


def build_lines(url: str, tmp: Path, checks: bool = True) -> None:
    """Build the commission marts, everything upstream of them and the organizations a
    close looks up (the marts no commission model reads are left out, to keep tests
    short); with `checks`, the two §8.8 checks run in the same dbt process (only them:
    no other data test). Pass the same `tmp` to every dbt call of a database: dbt
    then re-parses only what changed."""
    models = ["+fct_commission_lines", "+partner_statements", "stg_crm__organizations"]
    if not checks:
        dbt(url, tmp, "run", "--select", *models)
        return
    output = dbt(url, tmp, "build", "--indirect-selection", "empty", "--select", *models, *CHECKS)
    _assert_checks_passed(output)


def build_commissions(url: str, tmp: Path) -> None:
    """Rebuild only the commission models (plans → due → lines → statements): enough
    after a plan changed or a close, when no deal or touchpoint did."""
    dbt(url, tmp, "run", "--select", "stg_crm__commission_plan_versions+", "stg_commissions__closings+",
        "stg_commissions__ledger_lines+")  # fmt: skip


def close(
    url: str, period: str, org_ids: Sequence[str] | None, now: datetime | None = None
) -> list[OrgClose]:
    """The real close (`close_period`) of `period` ('YYYY-MM') for `org_ids` (None: all)."""
    return close_period(url, Period.parse(period), org_ids, now)


def commission_checks(url: str, tmp: Path) -> None:
    """Run the two §8.8 checks (dbt tests); fails with dbt's output when either finds a row."""
    _assert_checks_passed(dbt(url, tmp, "test", "--select", *CHECKS))


def _assert_checks_passed(output: str) -> None:
    for check in CHECKS:
        assert re.search(rf"PASS {check}\b", output), output[-3000:]


def _rows(url: str, query: str, params: Sequence[object] = ()) -> list[dict]:
    with psycopg.connect(url) as conn:
        return conn.cursor(row_factory=dict_row).execute(query, list(params)).fetchall()  # type: ignore[arg-type]


def lines(url: str, org_id: str | None = None) -> dict[LineKey, dict]:
    """marts.fct_commission_lines (of one organization, or all) by LineKey; each value
    holds plan_id, attribution_model, amount_usd, period_status, deal_closed_at."""
    found: dict[LineKey, dict] = {}
    for row in _rows(
        url,
        "select * from marts.fct_commission_lines where %s::text is null or org_id = %s",
        [org_id, org_id],
    ):
        key = (row["org_id"], f"{row['period']:%Y-%m}", row["deal_id"], row["partner_id"],
               row["line_type"])  # fmt: skip
        assert key not in found, f"two lines {key}"
        found[key] = {k: row[k] for k in
                      ("plan_id", "attribution_model", "amount_usd", "period_status", "deal_closed_at")}  # fmt: skip
    return found


def statements(url: str) -> dict[tuple[str, str, str], dict]:
    """marts.partner_statements by (org_id, partner_id, period 'YYYY-MM'), without computed_at."""
    return {
        (row["org_id"], row["partner_id"], f"{row['period']:%Y-%m}"): {
            k: v
            for k, v in row.items()
            if k not in ("org_id", "partner_id", "period", "computed_at")
        }
        for row in _rows(url, "select * from marts.partner_statements")
    }


def ledger_rows(url: str, org_id: str, period: str | None = None) -> list[tuple]:
    """commissions.ledger_lines of an organization (of one closed month 'YYYY-MM', or all),
    every column as stored, in a stable order."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select closing_id, org_id, period, deal_id, partner_id, line_type, plan_id,"
            " attribution_model, amount_usd::text, deal_closed_at from commissions.ledger_lines"
            " where org_id = %s and (%s::date is null or period = %s::date)"
            ' order by period, deal_id collate "C", partner_id collate "C", line_type',
            [org_id, _first_day(period), _first_day(period)],
        ).fetchall()


def ledger_digest(url: str, org_id: str, period: str | None = None) -> str:
    """SHA-256 of `ledger_rows` as text (amounts as stored, scale included): equal
    digests mean byte-identical rows."""
    text = "\n".join(repr(row) for row in ledger_rows(url, org_id, period))
    return hashlib.sha256(text.encode()).hexdigest()


def _first_day(period: str | None) -> object:
    return None if period is None else Period.parse(period).first_day
