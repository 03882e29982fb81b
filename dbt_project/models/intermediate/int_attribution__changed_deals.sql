{{
    config(
        materialized="incremental",
        incremental_strategy="append",
        on_schema_change="fail",
        indexes=[{"columns": ["detected_batch_id"]}],
        post_hook=[
            "{{ save_watermark(absorbed_high_water()) }}",
            "delete from {{ this }} where detected_batch_id <= coalesce({{ consumers_low_water() }}, 0)",
            "analyze {{ this }}",
        ],
    )
}}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The change log that keeps the marts incremental: one row per deal whose
-- attribution inputs changed since the last run — a new version of the deal, a
-- new or changed touchpoint (also the deal a touchpoint moved away from), a
-- changed partner of one of its touchpoints, or an FX rate on or before its
-- reference date. Each mart reads the entries newer than its own watermark;
-- entries every mart has read are pruned. Its size swings every run, so it is
-- analyzed after each one: the consumers plan their joins on it.
--
-- detected_batch_id = the batch up to which all four state tables had absorbed
-- the raw data when this ran (the lowest of their watermarks).

{#- Numbers, not subqueries, so the planner reads the new rows by index (macro watermark_value). -#}
{% set since -%}
    {%- if is_incremental() -%}
        {{ watermark_value() }}
    {%- else -%}
        {{ batch_value("coalesce(" ~ consumers_low_water() ~ ", " ~ absorbed_high_water() ~ ")") }}
    {%- endif -%}
{%- endset %}

-- The tables are named in each branch rather than in shared CTEs: a CTE used
-- more than once is materialized whole (2.8M touchpoints written to temp files)
-- before the batch_id filters apply; named directly, each branch reads only the
-- new rows through the batch_id indexes.
with changed as (
    select deals.deal_id from {{ ref('int_deals__current') }} as deals where deals.batch_id > {{ since }}

    union

    select touchpoints.deal_id from {{ ref('int_touchpoints__current') }} as touchpoints where touchpoints.batch_id > {{ since }}

    union

    select unnest(touchpoints.previous_deal_ids)
    from {{ ref('int_touchpoints__current') }} as touchpoints
    where touchpoints.batch_id > {{ since }}

    union

    select touchpoints.deal_id
    from {{ ref('int_touchpoints__current') }} as touchpoints
    inner join {{ ref('int_partners__current') }} as partners
        on touchpoints.partner_id = partners.partner_id
    where partners.batch_id > {{ since }}

    union

    select deals.deal_id
    from {{ ref('int_deals__current') }} as deals
    inner join (
        select
            currency,
            min(rate_date) as first_changed_date
        from {{ ref('int_fx_rates__current') }}
        where batch_id > {{ since }}
        group by currency
    ) as fx_changes
        on
            deals.currency = fx_changes.currency
            and deals.fx_reference_date >= fx_changes.first_changed_date
)

select
    changed.deal_id,
    {{ absorbed_high_water() }} as detected_batch_id
from changed
