{{ config(materialized="view") }}

-- The line each (deal, partner) needs in an open period (docs/contract.md §8.5):
-- what is due now minus what closed periods booked, when not zero. Never booked:
-- an `earned` line in the period of closed_at + holding days, or in the
-- organization's earliest open period when that one is already closed (a deal
-- won late). Booked before: an `adjustment` line in the earliest open period.
-- An organization's earliest open period is the month after its last closed one.
-- A view, so `attribution commissions close` reads it inside its transaction,
-- against the ledger as it is at that moment.

with last_closed as (
    select
        org_id,
        max(period) as period
    from {{ ref('stg_commissions__closings') }}
    group by org_id
),

booked as (
    select
        org_id,
        deal_id,
        partner_id,
        sum(amount_usd) as booked_usd,
        (array_agg(plan_id order by period desc, line_type desc))[1] as plan_id,
        (array_agg(attribution_model order by period desc, line_type desc))[1] as attribution_model,
        (array_agg(deal_closed_at order by period desc, line_type desc))[1] as deal_closed_at
    from {{ ref('stg_commissions__ledger_lines') }}
    group by org_id, deal_id, partner_id
),

differences as (
    select
        coalesce(due.org_id, booked.org_id) as org_id,
        coalesce(due.deal_id, booked.deal_id) as deal_id,
        coalesce(due.partner_id, booked.partner_id) as partner_id,
        coalesce(due.plan_id, booked.plan_id) as plan_id,
        coalesce(due.attribution_model, booked.attribution_model) as attribution_model,
        coalesce(due.deal_closed_at, deals.closed_at, booked.deal_closed_at) as deal_closed_at,
        due.earned_period,
        booked.deal_id is null as never_booked,
        coalesce(due.due_usd, 0) - coalesce(booked.booked_usd, 0) as amount_usd
    from {{ ref('int_commissions__due') }} as due
    full outer join booked
        on
            due.org_id = booked.org_id
            and due.deal_id = booked.deal_id
            and due.partner_id = booked.partner_id
    left join {{ ref('fct_deals') }} as deals
        on booked.org_id = deals.org_id and booked.deal_id = deals.deal_id
)

select
    differences.org_id,
    case
        when differences.never_booked
            then greatest(differences.earned_period, (last_closed.period + interval '1 month')::date)
        else (last_closed.period + interval '1 month')::date
    end as period,
    differences.deal_id,
    differences.partner_id,
    case when differences.never_booked then 'earned' else 'adjustment' end as line_type,
    differences.plan_id,
    differences.attribution_model,
    differences.amount_usd,
    differences.deal_closed_at
from differences
left join last_closed on differences.org_id = last_closed.org_id
where differences.amount_usd <> 0
