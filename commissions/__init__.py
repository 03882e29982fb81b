"""Commissions (docs/commissions.md): closing periods into the append-only ledger and
writing partner statements. Plain Python on the platform database; it knows
nothing of Dagster (orchestration/defs/commissions runs the close as a job)."""

from commissions.close import CloseRefused, OrgClose, check_close, close_period
from commissions.periods import Period
from commissions.statements import StatementsWritten, write_statements

__all__ = [
    "CloseRefused",
    "OrgClose",
    "Period",
    "StatementsWritten",
    "check_close",
    "close_period",
    "write_statements",
]
