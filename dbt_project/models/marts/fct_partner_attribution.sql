{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key="deal_id",
        tombstone_column="attribution_model",
        org_history={"model": "int_deals__mart_state", "column": "org_ids"},
        on_schema_change="fail",
        indexes=[
            {"columns": ["org_id", "deal_id", "partner_id", "attribution_model"], "unique": True},
            {"columns": ["org_id", "attribution_model", "partner_id"]},
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
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Credit per (deal, partner, attribution model) for won deals: a
-- partner's credit is the sum of its eligible touchpoints' credits; rows exist
-- only where that sum is > 0. A won deal without a USD amount (no FX rate yet)
-- gets no rows until its rate arrives.

with won_deals as (
    select
        deal_id,
        org_id,
        amount_usd,
        closed_at
    from {{ ref('fct_deals') }}
    where
        is_won
        and amount_usd is not null
        {% if is_incremental() %}and deal_id in {{ changed_deal_ids() }}{% endif %}
),

touchpoint_credits as (
    select
        eligible.deal_id,
        eligible.partner_id,
        models.attribution_model,
        models.credit
    from {{ ref('int_attribution__eligible_touchpoints') }} as eligible
    cross join
        lateral (
            values
            {%- for model_name, credit_sql in attribution_models().items() %}
                ('{{ model_name }}', ({{ credit_sql }})::numeric){% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as models (attribution_model, credit)
    where
        eligible.touchpoint_id is not null
        and eligible.deal_id in (select won_deals.deal_id from won_deals)
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

-- Each partner's amount is its credit times the deal's USD amount (numeric
-- multiplication is exact), except for the partner with the largest credit,
-- which takes what is left. The credits are rounded fractions (~20 significant
-- digits), so credit × amount alone misses the deal's amount by cents once that
-- amount passes ~10^18 (10^15 at a high FX rate); the remainder makes the
-- amounts of a deal add up to it exactly under every model. One window pass
-- per (deal, model).
shares as (
    select
        partner_credits.*,
        won_deals.org_id,
        won_deals.amount_usd,
        won_deals.closed_at,
        partner_credits.credit * won_deals.amount_usd as share,
        sum(partner_credits.credit * won_deals.amount_usd) over deal_model as shares_total,
        row_number() over (
            deal_model order by partner_credits.credit desc, partner_credits.partner_id collate "C"  -- noqa: RF02
        ) as credit_rank
    from partner_credits
    inner join won_deals on partner_credits.deal_id = won_deals.deal_id
    window deal_model as (partition by partner_credits.deal_id, partner_credits.attribution_model)
)

select
    org_id,
    deal_id,
    partner_id,
    attribution_model,
    -- trim_scale: 0.5 rather than 0.50000000000000000000 for the same value
    trim_scale(credit) as credit,
    trim_scale(
        case when credit_rank = 1 then amount_usd - (shares_total - share) else share end
    ) as attributed_amount_usd,
    amount_usd as deal_amount_usd,
    closed_at,
    touchpoint_count
from shares

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
        null as touchpoint_count
    from (select distinct deal_id from {{ changed_deal_ids() }} as c) as changed
{% endif %}
