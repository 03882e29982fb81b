{{
    config(
        materialized="table",
        indexes=[
            {"columns": ["org_id", "partner_id", "period"], "unique": True},
            {"columns": ["org_id", "period"]},
        ],
        post_hook=["{{ hide_statistics_from_tenants(counts=['org_id', 'partner_id', 'period']) }}"],
    )
}}

-- One statement per partner and period (docs/contract.md §8.6): its earned lines,
-- its adjustments and their total, from fct_commission_lines.

select
    lines.org_id,
    lines.partner_id,
    partners.partner_name,
    lines.period,
    min(lines.period_status) as period_status,
    -- 0.00, not 0: money in cents whatever the sum (docs/contract.md §5.7).
    coalesce(sum(lines.amount_usd) filter (where lines.line_type = 'earned'), 0.00) as earned_usd,
    coalesce(sum(lines.amount_usd) filter (where lines.line_type = 'adjustment'), 0.00) as adjustments_usd,
    sum(lines.amount_usd) as total_usd,
    count(*) as line_count,
    now() as computed_at
from {{ ref('fct_commission_lines') }} as lines
left join {{ ref('int_partners__current') }} as partners
    on lines.partner_id = partners.partner_id and lines.org_id = partners.org_id
group by lines.org_id, lines.partner_id, partners.partner_name, lines.period
