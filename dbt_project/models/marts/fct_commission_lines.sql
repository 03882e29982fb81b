{{
    config(
        materialized="table",
        indexes=[
            {
                "columns": ["org_id", "period", "deal_id", "partner_id", "line_type"],
                "unique": True,
                "name": "fct_commission_lines__org_period_deal_partner_type_idx",
            },
            {"columns": ["org_id", "period", "partner_id"]},
            {"columns": ["org_id", "partner_id", "period"]},
        ],
        pre_hook="{{ large_work_mem() }}",
        post_hook=["{{ hide_statistics_from_tenants(counts=['org_id', 'partner_id', 'period']) }}"],
    )
}}

-- Commission lines (docs/contract.md §8.5, §8.6): the lines of closed periods
-- exactly as the ledger recorded them, and the open line each (deal, partner)
-- needs so that its lines add up to what is due now. Rebuilt whole on every run
-- (docs/commissions.md, "Cost").

select
    org_id,
    partner_id,
    deal_id,
    plan_id,
    attribution_model,
    line_type,
    amount_usd,
    period,
    'closed' as period_status,
    deal_closed_at,
    now() as computed_at
from {{ ref('stg_commissions__ledger_lines') }}

union all

select
    org_id,
    partner_id,
    deal_id,
    plan_id,
    attribution_model,
    line_type,
    amount_usd,
    period,
    'open' as period_status,
    deal_closed_at,
    now() as computed_at
from {{ ref('int_commissions__open_lines') }}
