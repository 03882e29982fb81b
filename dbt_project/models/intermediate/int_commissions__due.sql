{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="replace_keys",
        tombstone_column="partner_id",
        on_schema_change="fail",
        indexes=[{"columns": ["org_id", "deal_id", "partner_id"], "unique": True}, {"columns": ["deal_id"]}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water(['fct_deals', 'fct_partner_attribution'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_attribution__eligible_touchpoints') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('stg_crm__commission_plan_versions') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Commission due now per (won deal, partner) (docs/contract.md §8.1–8.3): the
-- plan that applies, its model, and rate × the partner's attributed amount under
-- that model (for `sourced`: rate × the deal's amount when the partner sourced
-- it), in cents rounded half to even; and the period the earned line belongs to
-- (closed_at + the plan's holding days). No row when nothing is due: the deal is
-- not won, has no USD amount or no plan, or the partner gets no credit.
-- Incremental runs recompute the deals of macro commission_changed_deals (the
-- changed deals; the won deals a changed plan's old or new dates cover); each
-- leaves a tombstone (partner_id null), so a deal no longer due loses its rows.

with won_deals as (
    select
        deal_id,
        org_id,
        amount_usd,
        closed_at,
        (closed_at at time zone 'UTC')::date as closed_date,
        sourced_partner_id
    from {{ ref('fct_deals') }}
    where
        is_won
        and amount_usd is not null
        {% if is_incremental() %}
            and (org_id, deal_id) in (select changed.org_id, changed.deal_id from {{ commission_changed_deals() }} as changed)
        {% endif %}
),

-- The partners a plan may pay on a deal: every credited one, and its sourcing partner.
candidates as (
    select
        attribution.deal_id,
        attribution.partner_id
    from won_deals
    inner join {{ ref('fct_partner_attribution') }} as attribution
        on won_deals.org_id = attribution.org_id and won_deals.deal_id = attribution.deal_id
    union
    select
        won_deals.deal_id,
        won_deals.sourced_partner_id as partner_id
    from won_deals
    where won_deals.sourced_partner_id is not null
),

-- A plan naming the partner wins over the organization's default; then the
-- latest effective_from, then the greatest plan_id.
planned as (
    select
        won_deals.*,
        candidates.partner_id,
        plan.plan_id,
        plan.attribution_model,
        plan.rate,
        plan.holding_days
    from candidates
    inner join won_deals on candidates.deal_id = won_deals.deal_id
    cross join lateral (
        select plans.*
        from {{ ref('int_commission_plans__current') }} as plans
        where
            plans.org_id = won_deals.org_id
            and (plans.partner_id = candidates.partner_id or plans.partner_id is null)
            and plans.effective_from <= won_deals.closed_date
            and (plans.effective_to is null or won_deals.closed_date < plans.effective_to)
        order by plans.partner_id is not null desc, plans.effective_from desc, plans.plan_id collate "C" desc  -- noqa: RF03
        limit 1
    ) as plan
),

owed as (
    select
        planned.*,
        case
            when planned.attribution_model = 'sourced'
                then case when planned.partner_id = planned.sourced_partner_id then planned.rate * planned.amount_usd end
            else planned.rate * attribution.attributed_amount_usd
        end as exact_due_usd
    from planned
    left join {{ ref('fct_partner_attribution') }} as attribution
        on
            planned.org_id = attribution.org_id
            and planned.deal_id = attribution.deal_id
            and planned.partner_id = attribution.partner_id
            and planned.attribution_model = attribution.attribution_model
)

select
    org_id,
    deal_id,
    partner_id,
    plan_id,
    attribution_model,
    rate,
    holding_days,
    closed_at as deal_closed_at,
    date_trunc('month', (closed_at + make_interval(days => holding_days)) at time zone 'UTC')::date as earned_period,
    {{ round_half_even_cents('exact_due_usd') }} as due_usd
from owed
where exact_due_usd is not null

{% if is_incremental() %}
    union all

    select
        changed.org_id,
        changed.deal_id,
        null as partner_id,
        null as plan_id,
        null as attribution_model,
        null as rate,
        null as holding_days,
        null as deal_closed_at,
        null as earned_period,
        null as due_usd
    from {{ commission_changed_deals() }} as changed
{% endif %}
