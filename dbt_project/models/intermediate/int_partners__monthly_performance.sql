{{
    config(
        materialized="incremental",
        unique_key=["partner_id", "month"],
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        tombstone_column="deals_touched",
        on_schema_change="fail",
        indexes=[{"columns": ["partner_id", "month"], "unique": True}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'int_partners__deal_contributions'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_attribution__eligible_touchpoints') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- One row per partner and UTC month of deal creation: the sums, counts and
-- extremes partner_performance adds up. Incremental runs recompute the
-- (partner, month) slices a changed deal belongs or belonged to: every partner
-- that ever touched it × every month it was ever created in (int_deals__mart_state
-- keeps both; its dates also hold closing days, which only adds slices that are
-- recomputed to the same values and kept). A slice left empty leaves a tombstone.

{% if is_incremental() %}
    with changed_slices as (
        select distinct
            partners.partner_id,
            date_trunc('month', dates.metric_date)::date as month
        from {{ ref('int_deals__mart_state') }} as state
        cross join lateral unnest(state.partner_ids) as partners (partner_id)
        cross join lateral unnest(state.metric_dates) as dates (metric_date)
        where state.deal_id in {{ changed_deal_ids(reweighted=true) }}
    ),
{% else %}
    with
{% endif %}

slices as (
    select
        contributions.partner_id,
        contributions.month,
        count(*) as deals_touched,
        count(*) filter (where contributions.is_won_status) as deals_won,
        count(*) filter (where contributions.is_lost_status) as deals_lost,
        count(*) filter (where contributions.is_won and contributions.is_sourcing_partner) as sourced_deals_won,
        sum(contributions.amount_usd) filter (where contributions.is_won and contributions.is_sourcing_partner)
            as sourced_revenue_usd,
        sum(contributions.amount_usd) filter (where contributions.is_won and not contributions.is_sourcing_partner)
            as influenced_revenue_usd,
        sum(contributions.amount_usd) filter (where contributions.is_won) as won_revenue_usd,
        count(contributions.amount_usd) filter (where contributions.is_won) as won_with_amount,
        {%- for model_name in attribution_model_names() %}
            sum(contributions.attributed_revenue_usd_{{ model_name }}) as attributed_revenue_usd_{{ model_name }},
        {%- endfor %}
        min(contributions.first_touch_at) as first_touch_at,
        max(contributions.last_touch_at) as last_touch_at
    from {{ ref('int_partners__deal_contributions') }} as contributions
    {% if is_incremental() %}
        where (contributions.partner_id, contributions.month) in (
            select changed_slices.partner_id, changed_slices.month from changed_slices
        )
    {% endif %}
    group by contributions.partner_id, contributions.month
)

{% if is_incremental() %}
    select
        changed_slices.partner_id,
        changed_slices.month,
        slices.deals_touched,
        slices.deals_won,
        slices.deals_lost,
        slices.sourced_deals_won,
        slices.sourced_revenue_usd,
        slices.influenced_revenue_usd,
        slices.won_revenue_usd,
        slices.won_with_amount,
        {%- for model_name in attribution_model_names() %}
            slices.attributed_revenue_usd_{{ model_name }},
        {%- endfor %}
        slices.first_touch_at,
        slices.last_touch_at
    from changed_slices
    left join slices on changed_slices.partner_id = slices.partner_id and changed_slices.month = slices.month
{% else %}
    select
        slices.partner_id,
        slices.month,
        slices.deals_touched,
        slices.deals_won,
        slices.deals_lost,
        slices.sourced_deals_won,
        slices.sourced_revenue_usd,
        slices.influenced_revenue_usd,
        slices.won_revenue_usd,
        slices.won_with_amount,
        {%- for model_name in attribution_model_names() %}
            slices.attributed_revenue_usd_{{ model_name }},
        {%- endfor %}
        slices.first_touch_at,
        slices.last_touch_at
    from slices
{% endif %}
