{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        on_schema_change="fail",
        indexes=[{"columns": ["deal_id"], "unique": True}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water()) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- What the marts need to know about each deal beyond its current facts, kept
-- here (schema intermediate, which BI roles cannot read) rather than in
-- fct_deals, where a tenant would see other organizations' ids in them:
--   - its sourcing partner and every partner that has ever touched or sourced
--     it (partner_performance recomputes those partners when the deal changes);
--   - every organization it has ever belonged to (the marts find a deal's old
--     rows by (organization, deal) when it moves, and org_daily_metrics
--     recomputes those organizations' days);
--   - every UTC day it was ever created or closed on (org_daily_metrics);
--   - every UTC month it was ever closed (won or lost) in (the data-driven
--     model's path slices and training sets it may have been part of);
--   - which loaded version it reflects (attribution_backlog).
-- Incremental runs rebuild the deals of the change log and add the current
-- values to what each deal had before; a full refresh starts the history over.

with deals as (
    select
        deal_id,
        org_id,
        status,
        created_at,
        closed_at,
        updated_at,
        batch_id,
        line_no
    from {{ ref('int_deals__current') }}
    {% if is_incremental() %}where deal_id in {{ changed_deal_ids() }}{% endif %}
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
-- result): its touching partners and the partner of the earliest referral /
-- deal registration within 24 hours of the deal's creation (docs/attribution.md,
-- "Sourcing").
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

current_state as (
    select
        deals.deal_id,
        deals.org_id,
        touch_summary.sourced_partner_id,
        coalesce(touch_summary.partner_ids, '{}') as touching_partner_ids,
        (deals.created_at at time zone 'UTC')::date as created_date,
        case
            when deals.status in ('won', 'lost') then (deals.closed_at at time zone 'UTC')::date
        end as closed_date,
        deals.updated_at as source_updated_at,
        deals.batch_id as source_batch_id,
        deals.line_no as source_line_no
    from deals
    left join touch_summary on deals.deal_id = touch_summary.deal_id
)

select
    current_state.deal_id,
    current_state.org_id,
    current_state.sourced_partner_id,
    current_state.source_updated_at,
    current_state.source_batch_id,
    current_state.source_line_no,
    {% if is_incremental() %}
        -- Sorted, so a deal whose history did not grow reads the same and is not rewritten.
        array(
            select distinct v
            from unnest(current_state.touching_partner_ids || coalesce(previous.partner_ids, '{}')) as v
            where v is not null
            order by v
        ) as partner_ids,
        array(
            select distinct v
            from unnest(array[current_state.org_id] || coalesce(previous.org_ids, '{}')) as v
            order by v
        ) as org_ids,
        array(
            select distinct v
            from
                unnest(
                    array[current_state.created_date, current_state.closed_date]
                    || coalesce(previous.metric_dates, '{}')
                ) as v
            where v is not null
            order by v
        ) as metric_dates,
        array(
            select distinct v
            from
                unnest(
                    array[date_trunc('month', current_state.closed_date)::date]
                    || coalesce(previous.closed_months, '{}')
                ) as v
            where v is not null
            order by v
        ) as closed_months
    from current_state
    left join {{ this }} as previous on current_state.deal_id = previous.deal_id
    {% else %}
        -- The sourcing partner is one of the touching partners, already distinct and sorted.
        current_state.touching_partner_ids as partner_ids,
        array[current_state.org_id] as org_ids,
        case
            when current_state.closed_date is null or current_state.closed_date = current_state.created_date
                then array[current_state.created_date]
            when current_state.closed_date < current_state.created_date
                then array[current_state.closed_date, current_state.created_date]
            else array[current_state.created_date, current_state.closed_date]
        end as metric_dates,
        case
            when current_state.closed_date is null then '{}'::date[]
            else array[date_trunc('month', current_state.closed_date)::date]
        end as closed_months
    from current_state
    {% endif %}
