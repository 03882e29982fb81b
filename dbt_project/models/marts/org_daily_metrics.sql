{% set default_model = var("default_attribution_model") %}
{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key=["org_id", "metric_date"],
        tombstone_column="deals_created",
        on_schema_change="fail",
        indexes=[{"columns": ["org_id", "metric_date"], "unique": True}],
        post_hook="{{ save_watermark(change_log_high_water(['fct_deals', 'fct_partner_attribution'])) }}",
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}

-- One row per organization and UTC day with any activity (SPEC §5). Incremental
-- runs rebuild the (organization, day) pairs a changed deal or touchpoint counts
-- or counted for; a pair left without activity leaves a tombstone
-- (deals_created null) that removes its row.

{% if is_incremental() %}
    with changed_keys as (
        select distinct
            org_ids.org_id,
            dates.metric_date
        from {{ ref('fct_deals') }} as deals
        cross join lateral unnest(deals._org_ids) as org_ids (org_id)
        cross join lateral unnest(deals._metric_dates) as dates (metric_date)
        where deals.deal_id in {{ changed_deal_ids() }}

        union

        select
            org_ids.org_id,
            dates.metric_date
        from {{ ref('int_touchpoints__current') }} as touchpoints
        cross join lateral unnest(touchpoints.previous_org_ids || touchpoints.org_id) as org_ids (org_id)
        cross join
            lateral
            unnest(touchpoints.previous_dates || touchpoints.occurred_date) as dates (metric_date)
        where touchpoints.batch_id > {{ watermark() }}
    ),
{% else %}
    with
{% endif %}

deals as (
    select *
    from {{ ref('fct_deals') }}
),

created as (
    select
        deals.org_id,
        deals.created_date as metric_date,
        count(*) as deals_created
    from deals
    {% if is_incremental() %}
        where (deals.org_id, deals.created_date) in (select changed_keys.org_id, changed_keys.metric_date from changed_keys)
    {% endif %}
    group by 1, 2
),

closed as (
    select
        deals.org_id,
        deals.closed_date as metric_date,
        count(*) filter (where deals.is_won) as deals_won,
        count(*) filter (where deals.status = 'lost') as deals_lost,
        sum(deals.amount_usd) filter (where deals.is_won) as revenue_won_usd,
        avg(deals.amount_usd) filter (where deals.is_won) as avg_won_deal_size_usd,
        sum(deals.amount_usd) filter (where deals.is_won and deals.is_partner_sourced)
            as partner_sourced_revenue_usd,
        sum(deals.amount_usd) filter (where deals.is_won and deals.is_partner_influenced)
            as partner_influenced_revenue_usd
    from deals
    where
        deals.closed_date is not null
        {% if is_incremental() %}
            and (deals.org_id, deals.closed_date) in (select changed_keys.org_id, changed_keys.metric_date from changed_keys)
        {% endif %}
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
        on deals.deal_id = attribution.deal_id
    where
        deals.is_won
        and attribution.attribution_model = '{{ default_model }}'
        {% if is_incremental() %}
            and (deals.org_id, deals.closed_date) in (select changed_keys.org_id, changed_keys.metric_date from changed_keys)
        {% endif %}
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

touches as (
    select
        touchpoints.org_id,
        touchpoints.occurred_date as metric_date,
        count(*) as touchpoints
    from {{ ref('int_touchpoints__current') }} as touchpoints
    {% if is_incremental() %}
        where (touchpoints.org_id, touchpoints.occurred_date) in (select changed_keys.org_id, changed_keys.metric_date from changed_keys)
    {% endif %}
    group by 1, 2
),

active_keys as (
    select
        org_id,
        metric_date
    from created
    union
    select
        org_id,
        metric_date
    from closed
    union
    select
        org_id,
        metric_date
    from touches
),

all_keys as (
    select
        org_id,
        metric_date
    from active_keys
    {% if is_incremental() %}
        union
        select
            org_id,
            metric_date
        from changed_keys
    {% endif %}
)

select
    all_keys.org_id,
    all_keys.metric_date,
    -- null only on tombstones (a changed key left without activity)
    case when active_keys.org_id is not null then coalesce(created.deals_created, 0) end
        as deals_created,
    coalesce(closed.deals_won, 0) as deals_won,
    coalesce(closed.deals_lost, 0) as deals_lost,
    coalesce(closed.revenue_won_usd, 0) as revenue_won_usd,
    closed.avg_won_deal_size_usd,
    coalesce(closed.partner_sourced_revenue_usd, 0) as partner_sourced_revenue_usd,
    coalesce(closed.partner_influenced_revenue_usd, 0) as partner_influenced_revenue_usd,
    coalesce(attributed.attributed_revenue_usd, 0) as attributed_revenue_usd,
    coalesce(touches.touchpoints, 0) as touchpoints,
    coalesce(attributed.top_partners, '[]'::jsonb) as top_partners
from all_keys
left join active_keys
    on all_keys.org_id = active_keys.org_id and all_keys.metric_date = active_keys.metric_date
left join created
    on all_keys.org_id = created.org_id and all_keys.metric_date = created.metric_date
left join closed
    on all_keys.org_id = closed.org_id and all_keys.metric_date = closed.metric_date
left join attributed
    on all_keys.org_id = attributed.org_id and all_keys.metric_date = attributed.metric_date
left join touches
    on all_keys.org_id = touches.org_id and all_keys.metric_date = touches.metric_date
