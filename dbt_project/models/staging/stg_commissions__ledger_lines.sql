-- The lines of closed periods, as recorded when each period closed.
select
    closing_id,
    org_id,
    period,
    deal_id,
    partner_id,
    line_type,
    plan_id,
    attribution_model,
    amount_usd,
    deal_closed_at
from {{ source('commissions', 'ledger_lines') }}
