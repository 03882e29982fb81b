"""Partner statements as CSV files (docs/commissions.md, "Statements").

One folder per organization, one file per partner with lines in the period: its
lines and a total, safe to open in a spreadsheet. Ids and names come from the
CRM, so a text cell that starts like a formula (=, +, -, @, tab, carriage return)
gets a leading single quote (the rule of ingestion's FORMULA_PREFIXES), and file
and folder names keep only characters that are safe on every file system.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from commissions.periods import Period
from ingestion.contracts import FORMULA_PREFIXES
from platform_core.database import connect

COLUMNS = (
    "org_id",
    "partner_id",
    "partner_name",
    "period",
    "period_status",
    "deal_id",
    "line_type",
    "plan_id",
    "attribution_model",
    "deal_closed_at",
    "amount_usd",
)
_NUMBERS = {"amount_usd"}

_LINES = """
select lines.org_id, lines.partner_id, statements.partner_name, lines.period, lines.period_status,
       lines.deal_id, lines.line_type, lines.plan_id, lines.attribution_model,
       lines.deal_closed_at, lines.amount_usd
from marts.fct_commission_lines as lines
left join marts.partner_statements as statements
    on statements.org_id = lines.org_id and statements.partner_id = lines.partner_id
    and statements.period = lines.period
where lines.period = %s
order by lines.org_id, lines.partner_id, lines.line_type desc, lines.deal_id
"""


@dataclass
class StatementsWritten:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    organizations: int = 0
    lines: int = 0

    def line(self) -> str:
        return (
            f"{len(self.files):,} statements ({self.lines:,} lines, {self.organizations:,}"
            f" organizations) in {self.out_dir}"
        )


def spreadsheet_safe(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def safe_name(identifier: str) -> str:
    """A file or folder name for an id: letters, digits, '.', '_' and '-' kept, every
    other character as %XX (so distinct ids stay distinct), never '.' or '..'."""
    name = re.sub(
        r"[^A-Za-z0-9._-]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), identifier
    )
    return "%2E" + name[1:] if name.startswith(".") else name


def write_statements(url: str, period: Period, out_dir: Path) -> StatementsWritten:
    """Write every partner's statement for `period` under `out_dir`/<org>/<partner>.csv."""
    written = StatementsWritten(out_dir)
    current: tuple[str, str] | None = None
    writer = None
    handle = None
    total = 0
    organizations: set[str] = set()
    try:
        with connect(url) as conn:
            for row in conn.execute(_LINES, [period.first_day]):
                record = dict(zip(COLUMNS, row, strict=True))
                key = (record["org_id"], record["partner_id"])
                if key != current:
                    if handle is not None:
                        writer.writerow({"line_type": "total", "amount_usd": total})
                        handle.close()
                    folder = out_dir / safe_name(key[0])
                    folder.mkdir(parents=True, exist_ok=True)
                    organizations.add(key[0])
                    path = folder / f"{safe_name(key[1])}.csv"
                    handle = path.open("w", newline="", encoding="utf-8")
                    writer = csv.DictWriter(handle, COLUMNS)
                    writer.writeheader()
                    written.files.append(path)
                    current, total = key, 0
                writer.writerow(
                    {k: v if k in _NUMBERS else spreadsheet_safe(v) for k, v in record.items()}
                )
                total += record["amount_usd"]
                written.lines += 1
            if handle is not None:
                writer.writerow({"line_type": "total", "amount_usd": total})
    finally:
        if handle is not None:
            handle.close()
    written.organizations = len(organizations)
    return written
