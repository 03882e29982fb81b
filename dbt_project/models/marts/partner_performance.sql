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
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'int_partners__monthly_performance'])) }}",
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

-- One row per partner: the sum of its (partner, month) slices
-- (int_partners__monthly_performance). Incremental runs rebuild the partners that
-- touched (or used to touch, or sourced) a changed deal (int_deals__mart_state),
-- and partners whose own record changed; each costs one row per month of its
-- history, not one per deal. "Touched" = any touchpoint of the partner on a deal
-- of its own organization, whatever its date; attribution uses only eligible ones.

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

totals as (
    select
        months.partner_id,
        sum(months.deals_touched)::bigint as deals_touched,
        sum(months.deals_won)::bigint as deals_won,
        sum(months.deals_lost)::bigint as deals_lost,
        sum(months.sourced_deals_won)::bigint as sourced_deals_won,
        sum(months.sourced_revenue_usd) as sourced_revenue_usd,
        sum(months.influenced_revenue_usd) as influenced_revenue_usd,
        sum(months.won_revenue_usd) / nullif(sum(months.won_with_amount), 0) as avg_won_deal_size_usd,
        {%- for model_name in attribution_model_names() %}
            sum(months.attributed_revenue_usd_{{ model_name }}) as attributed_revenue_usd_{{ model_name }},
        {%- endfor %}
        min(months.first_touch_at) as first_touch_at,
        max(months.last_touch_at) as last_touch_at
    from {{ ref('int_partners__monthly_performance') }} as months
    where months.partner_id in (select partners.partner_id from partners)
    group by months.partner_id
)

select
    partners.org_id,
    partners.partner_id,
    partners.partner_name,
    partners.partner_type,
    partners.partner_status,
    coalesce(totals.deals_touched, 0) as deals_touched,
    coalesce(totals.deals_won, 0) as deals_won,
    coalesce(totals.deals_lost, 0) as deals_lost,
    -- Rates to 10 decimals at most, money in cents (docs/contract.md §5.7); sums
    -- of the marts' cents are cents already, round(…, 2) only writes 0 as 0.00.
    trim_scale(round(
        totals.deals_won::numeric / nullif(totals.deals_won + totals.deals_lost, 0),
        10
    )) as win_rate,
    coalesce(totals.sourced_deals_won, 0) as sourced_deals_won,
    round(coalesce(totals.sourced_revenue_usd, 0), 2) as sourced_revenue_usd,
    round(coalesce(totals.influenced_revenue_usd, 0), 2) as influenced_revenue_usd,
    {%- for model_name in attribution_model_names() %}
        round(coalesce(totals.attributed_revenue_usd_{{ model_name }}, 0), 2)
            as attributed_revenue_usd_{{ model_name }},
    {%- endfor %}
    round(totals.avg_won_deal_size_usd, 2) as avg_won_deal_size_usd,
    totals.first_touch_at,
    totals.last_touch_at,
    now() as computed_at
from partners
left join totals on partners.partner_id = totals.partner_id
