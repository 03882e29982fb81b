"""Retry policy for the steps that touch the platform database.

Ingestion and the dbt build are idempotent (a file loads once; incremental models
keep their watermark in the same transaction as their rows), so a step that failed
because PostgreSQL restarted or was briefly unreachable is simply run again, after
2, 4, 8 then 16 s. Failures a retry cannot cure (a data test, a refused file, a
permission error) bypass the policy: `permanent()` marks them
`allow_retries=False`, so the run fails at once with the real reason.
"""

from __future__ import annotations

import dagster as dg

from platform_core.connections import is_transient, is_transient_text

DATABASE_RETRY = dg.RetryPolicy(max_retries=4, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def classify(exc: BaseException, description: str | None = None) -> dg.Failure:
    """A Failure carrying `description`, retried only when `exc` is transient."""
    transient = is_transient(exc) or is_transient_text(description or str(exc))
    return dg.Failure(
        description=("database unavailable (will retry): " if transient else "")
        + (description or f"{exc.__class__.__name__}: {exc}"),
        allow_retries=transient,
    )
