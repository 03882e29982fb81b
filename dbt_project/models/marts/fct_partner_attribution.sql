{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key="deal_id",
        tombstone_column="attribution_model",
        org_history={"model": "int_deals__mart_state", "column": "org_ids"},
        on_schema_change="fail",
        indexes=[
            {
                "columns": ["org_id", "deal_id", "partner_id", "attribution_model"],
                "unique": True,
                "name": "fct_partner_attribution__org_deal_partner_model_idx",
            },
            {
                "columns": ["org_id", "attribution_model", "partner_id"],
                "name": "fct_partner_attribution__org_model_partner_idx",
            },
            {"columns": ["org_id", "closed_at"]},
        ],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ hide_statistics_from_tenants(counts=['org_id', 'deal_id', 'partner_id']) }}",
            "{{ save_watermark(change_log_high_water(['fct_deals', 'int_attribution__eligible_touchpoints'])) }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Two indexes are named: <table>__<columns>_idx would pass PostgreSQL's 63
-- characters (macros/index_names.sql).

-- Credit per (deal, partner, attribution model) for won deals: a
-- partner's credit is the sum of its eligible touchpoints' credits; rows exist
-- only where that sum is > 0. A won deal without a USD amount (no FX rate yet)
-- gets no rows until its rate arrives. Amounts are cents handed out by largest
-- remainder, credits are rounded to 10 decimals (docs/contract.md §5.7).

with won_deals as (
    select
        deal_id,
        org_id,
        amount_usd,
        closed_at,
        data_driven_fallback
    from {{ ref('fct_deals') }}
    where
        is_won
        and amount_usd is not null
        {% if is_incremental() %}and deal_id in {{ changed_deal_ids(reweighted=true) }}{% endif %}
),

-- The credit formulas divide by n and by the sum of the decay weights: given
-- with 40 decimals, every quotient carries 40 (PostgreSQL's default is ~20
-- significant digits). Shares of amounts up to 10^30 USD then stay exact to far
-- below a cent, and two partners with the same exact share get the same one
-- here (1/6 + 1/6 and 1/3 differ only past the 40th decimal; see `shares`).
eligible_touchpoints as (
    select
        eligible.deal_id,
        eligible.partner_id,
        eligible.position,
        eligible.n,
        eligible.decay_weight,
        eligible.decay_weight_sum,
        eligible.creation_position,
        {{ channel_weight('months', 'eligible') }} as channel_weight
    from {{ ref('int_attribution__eligible_touchpoints') }} as eligible
    {{ join_channel_weights('months', 'eligible') }}
    where
        eligible.touchpoint_id is not null
        and eligible.deal_id in (select won_deals.deal_id from won_deals)
),

eligible as (
    select
        eligible_touchpoints.deal_id,
        eligible_touchpoints.partner_id,
        eligible_touchpoints.position,
        round(eligible_touchpoints.n, 40) as n,
        eligible_touchpoints.decay_weight,
        round(eligible_touchpoints.decay_weight_sum, 40) as decay_weight_sum,
        eligible_touchpoints.creation_position,
        round(
            case
                when eligible_touchpoints.n = 1 then 1
                when eligible_touchpoints.creation_position in (1, eligible_touchpoints.n) then 2
                else 3
            end,
            40
        ) as milestone_count,
        eligible_touchpoints.channel_weight,
        round(sum(eligible_touchpoints.channel_weight) over (partition by eligible_touchpoints.deal_id), 40)
            as channel_weight_sum,
        won_deals.data_driven_fallback
    from eligible_touchpoints
    inner join won_deals on eligible_touchpoints.deal_id = won_deals.deal_id
),

touchpoint_credits as (
    select
        eligible.deal_id,
        eligible.partner_id,
        models.attribution_model,
        models.credit
    from eligible
    cross join
        lateral (
            values
            {%- for model_name, credit_sql in attribution_models().items() %}
                ('{{ model_name }}', ({{ credit_sql }})::numeric){% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as models (attribution_model, credit)
),

partner_credits as (
    select
        deal_id,
        partner_id,
        attribution_model,
        sum(credit) as credit,
        count(*) as touchpoint_count
    from touchpoint_credits
    group by deal_id, partner_id, attribution_model
    having sum(credit) > 0
),

-- Largest remainder, per (deal, model), in cents: each partner's share of the
-- deal's cents (credit × cents, rounded at the 20th decimal so that equal
-- exact shares compare equal) is floored; the cents left over go one each to
-- the partners with the largest remainders, ties to the smaller partner_id.
-- The amounts then add up to the deal's amount_usd exactly.
shares as (
    select
        partner_credits.*,
        won_deals.org_id,
        won_deals.amount_usd,
        won_deals.closed_at,
        floor(share.cents) as floor_cents,
        share.cents - floor(share.cents) as remainder_cents
    from partner_credits
    inner join won_deals on partner_credits.deal_id = won_deals.deal_id
    cross join lateral (select round(partner_credits.credit * won_deals.amount_usd * 100, 20) as cents) as share
),

ranked as (
    select
        *,
        amount_usd * 100 - sum(floor_cents) over deal_model as leftover_cents,
        row_number() over (
            deal_model order by remainder_cents desc, partner_id collate "C"  -- noqa: RF02
        ) as remainder_rank
    from shares
    window deal_model as (partition by deal_id, attribution_model)
)

select
    org_id,
    deal_id,
    partner_id,
    attribution_model,
    -- trim_scale: 0.5 rather than 0.5000000000
    trim_scale(round(credit, 10)) as credit,
    -- × 0.01, not / 100: a quotient keeps only ~16 significant digits (the cents
    -- of an amount past 10^14 USD would be lost).
    (floor_cents + case when remainder_rank <= leftover_cents then 1 else 0 end) * 0.01
        as attributed_amount_usd,
    amount_usd as deal_amount_usd,
    closed_at,
    touchpoint_count,
    now() as computed_at
from ranked

{% if is_incremental() %}
    union all
    -- Tombstones: every changed deal, so a deal that lost its credit loses its rows.
    select
        null as org_id,
        changed.deal_id,
        null as partner_id,
        null as attribution_model,
        null as credit,
        null as attributed_amount_usd,
        null as deal_amount_usd,
        null as closed_at,
        null as touchpoint_count,
        null as computed_at
    from (select distinct deal_id from {{ changed_deal_ids(reweighted=true) }} as c) as changed
{% endif %}
