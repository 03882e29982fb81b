{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        org_history={"model": "int_deals__mart_state", "column": "org_ids"},
        on_schema_change="fail",
        indexes=[
            {"columns": ["org_id", "deal_id"], "unique": True},
            {"columns": ["org_id", "status", "closed_at", "deal_id"]},
            {"columns": ["org_id", "closed_at", "deal_id"]},
            {"columns": ["org_id", "sourced_partner_id"]},
            {"columns": ["org_id", "created_date"]},
            {"columns": ["org_id", "closed_date"]},
        ],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ hide_statistics_from_tenants(counts=['deal_id', 'org_id', 'sourced_partner_id', 'created_date', 'closed_date']) }}",
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'int_attribution__eligible_touchpoints'])) }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The (org_id, created_date) and (org_id, closed_date) indexes let
-- org_daily_metrics recompute a day's (organization, day) keys without reading
-- the changed organizations' whole history.
--
-- One row per deal, its current state. Incremental runs rebuild the deals of
-- the change log. Every index starts with org_id (macro replace_keys,
-- `org_history`); the sourcing partner and the bookkeeping of what a deal used
-- to count for come from int_deals__mart_state.

with deals as (
    select *
    from {{ ref('int_deals__current') }}
    {% if is_incremental() %}where deal_id in {{ changed_deal_ids(reweighted=true) }}{% endif %}
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

-- Won deals whose data-driven credit falls back to linear, and why: their month's
-- training set (int_attribution__markov_months), or channels that all weigh 0.
data_driven as (
    select
        eligible.deal_id,
        coalesce(
            min(months.fallback_reason),
            case when sum({{ channel_weight('months', 'eligible') }}) = 0 then 'its channels weigh 0 in its month' end
        ) as fallback_reason
    from {{ ref('int_attribution__eligible_touchpoints') }} as eligible
    {{ join_channel_weights('months', 'eligible') }}
    where
        eligible.touchpoint_id is not null
        and eligible.is_won
        {% if is_incremental() %}and eligible.deal_id in (select deals.deal_id from deals){% endif %}  -- noqa: LT02
    group by eligible.deal_id
),

-- amount × rate is exact (up to 36 decimals); the mart shows it in cents
-- (docs/contract.md §5.7), and every USD figure downstream starts from these cents.
converted as (
    select
        deals.*,
        round(
            case
                when deals.currency = 'USD' then deals.amount
                else deals.amount * fx.usd_per_unit
            end,
            2
        ) as amount_usd
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
        state.sourced_partner_id,
        state.sourced_partner_id is not null as is_partner_sourced,
        state.sourced_partner_id is null
        and coalesce(eligible_counts.eligible_touchpoint_count, 0) > 0 as is_partner_influenced,
        case when data_driven.deal_id is not null then data_driven.fallback_reason is not null end as data_driven_fallback,
        data_driven.fallback_reason as data_driven_fallback_reason,
        (converted.created_at at time zone 'UTC')::date as created_date,
        case
            when converted.status in ('won', 'lost')
                then (converted.closed_at at time zone 'UTC')::date
        end as closed_date
    from converted
    left join eligible_counts on converted.deal_id = eligible_counts.deal_id
    left join data_driven on converted.deal_id = data_driven.deal_id
    left join {{ ref('int_deals__mart_state') }} as state on converted.deal_id = state.deal_id
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
    facts.data_driven_fallback,
    facts.data_driven_fallback_reason,
    facts.created_date,
    facts.closed_date,
    now() as computed_at
from facts
