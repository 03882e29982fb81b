{{
    config(
        materialized="incremental",
        unique_key="partner_id",
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        org_history={"model": "int_partners__current", "column": "org_ids"},
        on_schema_change="fail",
        indexes=[
            {"columns": ["org_id", "partner_id"], "unique": True},
            {
                "columns": ["org_id", "attributed_revenue_usd_" ~ var("default_attribution_model")],
                "name": "partner_performance__org_id_attributed_revenue_idx",
            },
        ],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ hide_statistics_from_tenants() }}",
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'fct_deals', 'fct_partner_attribution'])) }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_attribution__eligible_touchpoints') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The leaderboard index has one name whatever the default model
-- (macros/index_names.sql).

-- One row per partner. Incremental runs rebuild the partners that touched (or
-- used to touch, or sourced) a changed deal (int_deals__mart_state), and
-- partners whose own record changed. "Touched" = any touchpoint of the partner
-- on a deal of its own organization, whatever its date; attribution uses only
-- eligible ones.

with partners as (
    select *
    from {{ ref('int_partners__current') }}
    {% if is_incremental() %}
        where
            partner_id in (
                select unnest(state.partner_ids)
                from {{ ref('int_deals__mart_state') }} as state
                where state.deal_id in {{ changed_deal_ids(reweighted=true) }}
            )
            or batch_id > {{ watermark_value() }}
    {% endif %}
),

touches as (
    select
        touchpoints.partner_id,
        touchpoints.org_id,
        touchpoints.deal_id,
        min(touchpoints.occurred_at) as first_touch_at,
        max(touchpoints.occurred_at) as last_touch_at
    from partners
    inner join {{ ref('int_touchpoints__current') }} as touchpoints
        on partners.partner_id = touchpoints.partner_id and {{ same_org('partners.org_id', 'touchpoints.org_id') }}
    group by touchpoints.partner_id, touchpoints.org_id, touchpoints.deal_id
),

touched_deals as (
    select
        touches.partner_id,
        count(*) as deals_touched,
        count(*) filter (where deals.status = 'won') as deals_won,
        count(*) filter (where deals.status = 'lost') as deals_lost,
        sum(deals.amount_usd) filter (
            where deals.is_won and deals.sourced_partner_id is distinct from touches.partner_id
        ) as influenced_revenue_usd,
        avg(deals.amount_usd) filter (where deals.is_won) as avg_won_deal_size_usd,
        min(touches.first_touch_at) as first_touch_at,
        max(touches.last_touch_at) as last_touch_at
    from touches
    inner join {{ ref('fct_deals') }} as deals
        on touches.deal_id = deals.deal_id and {{ same_org('touches.org_id', 'deals.org_id') }}
    group by touches.partner_id
),

sourced as (
    select
        deals.sourced_partner_id as partner_id,
        count(*) as sourced_deals_won,
        sum(deals.amount_usd) as sourced_revenue_usd
    from {{ ref('fct_deals') }} as deals
    -- A deal's sourcing partner is a partner of its organization: matching on
    -- both uses the (org_id, sourced_partner_id) index.
    where deals.is_won and (deals.org_id, deals.sourced_partner_id) in (select partners.org_id, partners.partner_id from partners)
    group by deals.sourced_partner_id
),

attributed as (
    select
        attribution.partner_id,
        {%- for model_name in attribution_model_names() %}
            sum(attribution.attributed_amount_usd) filter (
                where attribution.attribution_model = '{{ model_name }}'
            ) as attributed_revenue_usd_{{ model_name }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref('fct_partner_attribution') }} as attribution
    -- Credit goes only to partners of the deal's organization (same index reason).
    where (attribution.org_id, attribution.partner_id) in (select partners.org_id, partners.partner_id from partners)
    group by attribution.partner_id
)

select
    partners.org_id,
    partners.partner_id,
    partners.partner_name,
    partners.partner_type,
    partners.partner_status,
    coalesce(touched_deals.deals_touched, 0) as deals_touched,
    coalesce(touched_deals.deals_won, 0) as deals_won,
    coalesce(touched_deals.deals_lost, 0) as deals_lost,
    -- Rates to 10 decimals at most, money in cents (docs/contract.md §5.7); sums
    -- of the marts' cents are cents already, round(…, 2) only writes 0 as 0.00.
    trim_scale(round(
        touched_deals.deals_won::numeric / nullif(touched_deals.deals_won + touched_deals.deals_lost, 0),
        10
    )) as win_rate,
    coalesce(sourced.sourced_deals_won, 0) as sourced_deals_won,
    round(coalesce(sourced.sourced_revenue_usd, 0), 2) as sourced_revenue_usd,
    round(coalesce(touched_deals.influenced_revenue_usd, 0), 2) as influenced_revenue_usd,
    {%- for model_name in attribution_model_names() %}
        round(coalesce(attributed.attributed_revenue_usd_{{ model_name }}, 0), 2)
            as attributed_revenue_usd_{{ model_name }},
    {%- endfor %}
    round(touched_deals.avg_won_deal_size_usd, 2) as avg_won_deal_size_usd,
    touched_deals.first_touch_at,
    touched_deals.last_touch_at,
    now() as computed_at
from partners
left join touched_deals on partners.partner_id = touched_deals.partner_id
left join sourced on partners.partner_id = sourced.partner_id
left join attributed on partners.partner_id = attributed.partner_id
