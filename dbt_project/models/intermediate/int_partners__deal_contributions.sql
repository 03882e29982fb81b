{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="replace_keys",
        tombstone_column="partner_id",
        on_schema_change="fail",
        indexes=[{"columns": ["deal_id"]}, {"columns": ["partner_id", "month"]}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'fct_deals', 'fct_partner_attribution'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_attribution__eligible_touchpoints') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- What one deal adds to one partner's row of partner_performance: one row per
-- (deal, partner of the deal's organization that touched it), filed under the
-- UTC month the deal was created in. int_partners__monthly_performance adds these
-- up per (partner, month), and partner_performance adds up a partner's months:
-- a day's run rewrites the rows of the deals it changed and the months they
-- belong (or belonged) to, never a partner's whole history.
-- Incremental runs rewrite the rows of the changed deals; a changed deal always
-- leaves one tombstone (partner_id null), so a deal no partner touches any more
-- loses its rows.

with changed as (
    {% if is_incremental() %}
        select
            state.org_id,
            state.deal_id
        from {{ ref('int_deals__mart_state') }} as state
        where state.deal_id in {{ changed_deal_ids(reweighted=true) }}
    {% else %}
        select
            null::text as org_id,
            null::text as deal_id
        where false
    {% endif %}
),

deals as (
    select
        deals.deal_id,
        deals.org_id,
        deals.status,
        deals.is_won,
        deals.amount_usd,
        deals.sourced_partner_id,
        date_trunc('month', deals.created_date)::date as month
    from {{ ref('fct_deals') }} as deals
    {% if is_incremental() %}
        -- fct_deals is found by (organization, deal): its indexes lead with org_id.
        where (deals.org_id, deals.deal_id) in (select changed.org_id, changed.deal_id from changed)
    {% endif %}
),

-- "Touched" = any touchpoint of a partner of the deal's organization, whatever its date.
touches as (
    select
        touchpoints.deal_id,
        touchpoints.partner_id,
        min(touchpoints.occurred_at) as first_touch_at,
        max(touchpoints.occurred_at) as last_touch_at
    from deals
    inner join {{ ref('int_touchpoints__current') }} as touchpoints
        on deals.deal_id = touchpoints.deal_id and {{ same_org('deals.org_id', 'touchpoints.org_id') }}
    inner join {{ ref('int_partners__current') }} as partners
        on touchpoints.partner_id = partners.partner_id and {{ same_org('deals.org_id', 'partners.org_id') }}
    group by touchpoints.deal_id, touchpoints.partner_id
),

attributed as (
    select
        attribution.deal_id,
        attribution.partner_id,
        {%- for model_name in attribution_model_names() %}
            sum(attribution.attributed_amount_usd) filter (
                where attribution.attribution_model = '{{ model_name }}'
            ) as attributed_revenue_usd_{{ model_name }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from deals
    inner join {{ ref('fct_partner_attribution') }} as attribution
        on deals.org_id = attribution.org_id and deals.deal_id = attribution.deal_id
    group by attribution.deal_id, attribution.partner_id
)

select
    deals.deal_id,
    touches.partner_id,
    deals.org_id,
    deals.month,
    (deals.status = 'won') as is_won_status,
    (deals.status = 'lost') as is_lost_status,
    deals.is_won,
    deals.amount_usd,
    coalesce(deals.sourced_partner_id = touches.partner_id, false) as is_sourcing_partner,
    {%- for model_name in attribution_model_names() %}
        attributed.attributed_revenue_usd_{{ model_name }},
    {%- endfor %}
    touches.first_touch_at,
    touches.last_touch_at
from deals
inner join touches on deals.deal_id = touches.deal_id
left join attributed on touches.deal_id = attributed.deal_id and touches.partner_id = attributed.partner_id

{% if is_incremental() %}
    union all

    select
        changed.deal_id,
        null as partner_id,
        changed.org_id,
        null as month,
        null as is_won_status,
        null as is_lost_status,
        null as is_won,
        null as amount_usd,
        null as is_sourcing_partner,
        {%- for model_name in attribution_model_names() %}
            null as attributed_revenue_usd_{{ model_name }},
        {%- endfor %}
        null as first_touch_at,
        null as last_touch_at
    from changed
{% endif %}
