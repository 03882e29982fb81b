-- The closes recorded in the commission ledger (docs/commissions.md).
select
    closing_id,
    org_id,
    first_period,
    period,
    closed_at,
    line_count,
    total_usd,
    lines_digest
from {{ source('commissions', 'closings') }}
