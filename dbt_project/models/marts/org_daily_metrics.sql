{% set default_model = var("default_attribution_model") %}
{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        unique_key=["org_id", "metric_date"],
        tombstone_column="deals_created",
        on_schema_change="fail",
        indexes=[{"columns": ["org_id", "metric_date"], "unique": True}],
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

-- One row per organization and UTC day with any activity. Incremental runs
-- rebuild the (organization, day) pairs a changed deal or touchpoint counts or
-- counted for (int_deals__mart_state, int_touchpoints__current); a pair left
-- without activity leaves a tombstone (deals_created null) that removes its row.
--
-- Set-based: every deal creation, close and day of touchpoints becomes one
-- contribution row keyed by (organization, day), and one GROUP BY adds them up
-- (rather than outer-joining one aggregate per measure on the key).

{% if is_incremental() %}
    with changed_keys as (
        select distinct
            org_ids.org_id,
            dates.metric_date
        from {{ ref('int_deals__mart_state') }} as state
        cross join lateral unnest(state.org_ids) as org_ids (org_id)
        cross join lateral unnest(state.metric_dates) as dates (metric_date)
        where state.deal_id in {{ changed_deal_ids(reweighted=true) }}

        union

        select
            org_ids.org_id,
            dates.metric_date
        from {{ ref('int_touchpoints__current') }} as touchpoints
        cross join lateral unnest(touchpoints.previous_org_ids || touchpoints.org_id) as org_ids (org_id)
        cross join
            lateral
            unnest(touchpoints.previous_dates || touchpoints.occurred_date) as dates (metric_date)
        where touchpoints.batch_id > {{ watermark_value() }}
    ),
{% else %}
    with
{% endif %}

deals as (
    select
        org_id,
        deal_id,
        status,
        is_won,
        amount_usd,
        is_partner_sourced,
        is_partner_influenced,
        created_date,
        closed_date
    from {{ ref('fct_deals') }}
),

-- Each source aggregated by (organization, day) on its own, then added up.
contributions as (
    select
        deals.org_id,
        deals.created_date as metric_date,
        count(*) as deals_created,
        0 as deals_won,
        0 as deals_lost,
        null::numeric as revenue_won_usd,
        null::bigint as won_with_amount,
        null::numeric as partner_sourced_revenue_usd,
        null::numeric as partner_influenced_revenue_usd,
        0 as touchpoints
    from deals
    where {{ in_changed_org_days('deals.org_id', 'deals.created_date') }}
    group by 1, 2

    union all

    select
        deals.org_id,
        deals.closed_date as metric_date,
        0 as deals_created,
        count(*) filter (where deals.is_won) as deals_won,
        count(*) filter (where deals.status = 'lost') as deals_lost,
        sum(deals.amount_usd) filter (where deals.is_won) as revenue_won_usd,
        count(deals.amount_usd) filter (where deals.is_won) as won_with_amount,
        sum(deals.amount_usd) filter (where deals.is_won and deals.is_partner_sourced)
            as partner_sourced_revenue_usd,
        sum(deals.amount_usd) filter (where deals.is_won and deals.is_partner_influenced)
            as partner_influenced_revenue_usd,
        0 as touchpoints
    from deals
    where
        deals.closed_date is not null
        and {{ in_changed_org_days('deals.org_id', 'deals.closed_date') }}
    group by 1, 2

    union all

    select
        touchpoints.org_id,
        touchpoints.occurred_date as metric_date,
        0 as deals_created,
        0 as deals_won,
        0 as deals_lost,
        null::numeric as revenue_won_usd,
        null::bigint as won_with_amount,
        null::numeric as partner_sourced_revenue_usd,
        null::numeric as partner_influenced_revenue_usd,
        count(*) as touchpoints
    from {{ ref('int_touchpoints__current') }} as touchpoints
    where {{ in_changed_org_days('touchpoints.org_id', 'touchpoints.occurred_date') }}
    group by 1, 2
),

daily as (
    select
        org_id,
        metric_date,
        sum(deals_created)::bigint as deals_created,
        sum(deals_won)::bigint as deals_won,
        sum(deals_lost)::bigint as deals_lost,
        coalesce(sum(revenue_won_usd), 0) as revenue_won_usd,
        -- one closed-date row per key at most, so this is avg(amount_usd) of its won deals
        sum(revenue_won_usd) / nullif(sum(won_with_amount), 0) as avg_won_deal_size_usd,
        coalesce(sum(partner_sourced_revenue_usd), 0) as partner_sourced_revenue_usd,
        coalesce(sum(partner_influenced_revenue_usd), 0) as partner_influenced_revenue_usd,
        sum(touchpoints)::bigint as touchpoints
    from contributions
    group by 1, 2
),

partner_revenue as (
    select
        deals.org_id,
        deals.closed_date as metric_date,
        attribution.partner_id,
        sum(attribution.attributed_amount_usd) as attributed_revenue_usd
    from deals
    inner join {{ ref('fct_partner_attribution') }} as attribution
        on deals.org_id = attribution.org_id and deals.deal_id = attribution.deal_id
    where
        deals.is_won
        and attribution.attribution_model = '{{ default_model }}'
        and {{ in_changed_org_days('deals.org_id', 'deals.closed_date') }}
    group by 1, 2, 3
),

attributed as (
    select
        partner_revenue.org_id,
        partner_revenue.metric_date,
        sum(partner_revenue.attributed_revenue_usd) as attributed_revenue_usd,
        jsonb_agg(
            jsonb_build_object(
                'partner_id', partner_revenue.partner_id,
                'partner_name', partners.partner_name,
                'attributed_revenue_usd', partner_revenue.attributed_revenue_usd
            )
            order by
                partner_revenue.attributed_revenue_usd desc,
                partner_revenue.partner_id collate "C"  -- noqa: RF02
        ) filter (where partner_revenue.rank <= 5) as top_partners
    from (
        select
            *,
            row_number() over (
                partition by org_id, metric_date
                order by attributed_revenue_usd desc, partner_id collate "C"
            ) as rank
        from partner_revenue
    ) as partner_revenue
    left join {{ ref('int_partners__current') }} as partners
        on partner_revenue.partner_id = partners.partner_id
    group by 1, 2
),

all_keys as (
    {% if is_incremental() %}
        -- every key in daily is a changed key; the others become tombstones
        select
            org_id,
            metric_date
        from changed_keys
    {% else %}
        select
            org_id,
            metric_date
        from daily
    {% endif %}
)

select
    all_keys.org_id,
    all_keys.metric_date,
    -- null only on tombstones (a changed key left without activity)
    daily.deals_created,
    coalesce(daily.deals_won, 0) as deals_won,
    coalesce(daily.deals_lost, 0) as deals_lost,
    -- Money in cents (docs/contract.md §5.7): the sums add up the marts' cents,
    -- round(…, 2) only writes 0 as 0.00; the average is rounded.
    round(coalesce(daily.revenue_won_usd, 0), 2) as revenue_won_usd,
    round(daily.avg_won_deal_size_usd, 2) as avg_won_deal_size_usd,
    round(coalesce(daily.partner_sourced_revenue_usd, 0), 2) as partner_sourced_revenue_usd,
    round(coalesce(daily.partner_influenced_revenue_usd, 0), 2) as partner_influenced_revenue_usd,
    round(coalesce(attributed.attributed_revenue_usd, 0), 2) as attributed_revenue_usd,
    coalesce(daily.touchpoints, 0) as touchpoints,
    coalesce(attributed.top_partners, '[]'::jsonb) as top_partners,
    now() as computed_at
from all_keys
left join daily
    on all_keys.org_id = daily.org_id and all_keys.metric_date = daily.metric_date
left join attributed
    on all_keys.org_id = attributed.org_id and all_keys.metric_date = attributed.metric_date
