{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        on_schema_change="fail",
        indexes=[
            {"columns": ["deal_id"], "unique": True},
            {"columns": ["org_id", "status", "closed_at", "deal_id"]},
            {"columns": ["org_id", "closed_at", "deal_id"]},
            {"columns": ["sourced_partner_id"]},
        ],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water(['int_attribution__eligible_touchpoints'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}

-- One row per deal, its current state (SPEC §5). Incremental runs rebuild the
-- deals of the change log. The underscore columns are bookkeeping for the
-- marts downstream: every organization, day and partner the deal has ever
-- counted for, so a change also refreshes what it used to count for.

with deals as (
    select *
    from {{ ref('int_deals__current') }}
    {% if is_incremental() %}where deal_id in {{ changed_deal_ids() }}{% endif %}
),

eligible_counts as (
    select
        deal_id,
        count(*) as eligible_touchpoint_count,
        count(distinct partner_id) as touching_partner_count
    from {{ ref('int_attribution__eligible_touchpoints') }}
    where
        touchpoint_id is not null
        {% if is_incremental() %}and deal_id in (select deals.deal_id from deals){% endif %}  -- noqa: LT02
    group by deal_id
),

-- Valid touches (a partner of the deal's organization), whatever their date.
touches as (
    select
        touchpoints.deal_id,
        touchpoints.partner_id,
        touchpoints.touchpoint_id,
        touchpoints.touchpoint_type,
        touchpoints.occurred_at,
        deals.created_at
    from deals
    inner join {{ ref('int_touchpoints__current') }} as touchpoints
        on deals.deal_id = touchpoints.deal_id and {{ same_org('deals.org_id', 'touchpoints.org_id') }}
    inner join {{ ref('int_partners__current') }} as partners
        on touchpoints.partner_id = partners.partner_id and {{ same_org('deals.org_id', 'partners.org_id') }}
),

-- Per deal in one pass over its touches (one GROUP BY rather than a sort per
-- result): its touching partners and, SPEC §4.3, the partner of the earliest
-- referral / deal registration within 24 hours of the deal's creation.
touch_summary as (
    select
        deal_id,
        array_agg(distinct partner_id) as partner_ids,
        (
            array_agg(partner_id order by occurred_at, touchpoint_id collate "C") filter (
                where
                touchpoint_type in ('referral', 'deal_registration')
                and occurred_at <= created_at + interval '24 hours'
            )
        )[1] as sourced_partner_id
    from touches
    group by deal_id
),

converted as (
    select
        deals.*,
        case
            when deals.currency = 'USD' then deals.amount
            else deals.amount * fx.usd_per_unit
        end as amount_usd
    from deals
    left join lateral (
        select rates.usd_per_unit
        from {{ ref('int_fx_rates__current') }} as rates
        where rates.currency = deals.currency and rates.rate_date <= deals.fx_reference_date
        order by rates.rate_date desc
        limit 1
    ) as fx on true
),

facts as (
    select
        converted.deal_id,
        converted.org_id,
        converted.deal_name,
        converted.status,
        converted.amount,
        converted.currency,
        converted.amount_usd,
        converted.created_at,
        converted.closed_at,
        converted.status = 'won' as is_won,
        coalesce(eligible_counts.eligible_touchpoint_count, 0) as eligible_touchpoint_count,
        coalesce(eligible_counts.touching_partner_count, 0) as touching_partner_count,
        touch_summary.sourced_partner_id,
        touch_summary.sourced_partner_id is not null as is_partner_sourced,
        touch_summary.sourced_partner_id is null
        and coalesce(eligible_counts.eligible_touchpoint_count, 0) > 0 as is_partner_influenced,
        (converted.created_at at time zone 'UTC')::date as created_date,
        case
            when converted.status in ('won', 'lost')
                then (converted.closed_at at time zone 'UTC')::date
        end as closed_date,
        converted.updated_at as _source_updated_at,
        converted.batch_id as _source_batch_id,
        converted.line_no as _source_line_no,
        coalesce(touch_summary.partner_ids, '{}') as _touching_partner_ids
    from converted
    left join eligible_counts on converted.deal_id = eligible_counts.deal_id
    left join touch_summary on converted.deal_id = touch_summary.deal_id
)

select
    facts.deal_id,
    facts.org_id,
    facts.deal_name,
    facts.status,
    facts.amount,
    facts.currency,
    facts.amount_usd,
    facts.created_at,
    facts.closed_at,
    facts.is_won,
    facts.eligible_touchpoint_count,
    facts.touching_partner_count,
    facts.sourced_partner_id,
    facts.is_partner_sourced,
    facts.is_partner_influenced,
    facts.created_date,
    facts.closed_date,
    facts._source_updated_at,
    facts._source_batch_id,
    facts._source_line_no,
    {% if is_incremental() %}
        array(
            select distinct v
            from
                unnest(
                    facts._touching_partner_ids
                    || coalesce(previous._partner_ids, '{}')
                    || array[facts.sourced_partner_id, previous.sourced_partner_id]
                ) as v
            where v is not null
        ) as _partner_ids,
        array(
            select distinct v
            from unnest(array[facts.org_id] || coalesce(previous._org_ids, '{}')) as v
        ) as _org_ids,
        array(
            select distinct v
            from
                unnest(
                    array[facts.created_date, facts.closed_date]
                    || coalesce(previous._metric_dates, '{}')
                ) as v
            where v is not null
        ) as _metric_dates
    from facts
    left join {{ this }} as previous on facts.deal_id = previous.deal_id
    {% else %}
        -- The sourcing partner is one of the touching partners, already distinct.
        facts._touching_partner_ids as _partner_ids,
        array[facts.org_id] as _org_ids,
        case
            when facts.closed_date is null or facts.closed_date = facts.created_date
                then array[facts.created_date]
            else array[facts.created_date, facts.closed_date]
        end as _metric_dates
    from facts
    {% endif %}
