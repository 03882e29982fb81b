{{
    config(
        materialized="incremental",
        unique_key=["org_id", "deal_id", "partner_id"],
        incremental_strategy="replace_keys",
        tombstone_column="line_type",
        on_schema_change="fail",
        indexes=[
            {
                "columns": ["org_id", "period", "deal_id", "partner_id", "line_type"],
                "unique": True,
                "name": "fct_commission_lines__org_period_deal_partner_type_idx",
            },
            {"columns": ["org_id", "period", "partner_id"]},
            {"columns": ["org_id", "partner_id", "period"]},
            {"columns": ["org_id", "deal_id", "partner_id"]},
        ],
        pre_hook=["{{ large_work_mem() }}", "{{ hold_commission_closes() }}"],
        post_hook=[
            "{{ hide_statistics_from_tenants(counts=['org_id', 'partner_id', 'period']) }}",
            "{{ save_watermark(change_log_high_water(['int_commissions__due'])) }}",
            "{{ save_watermark(closings_high_water(), suffix='__closings') }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_attribution__markov_months') }}
-- depends_on: {{ ref('int_attribution__eligible_touchpoints') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('fct_deals') }}
-- depends_on: {{ ref('stg_crm__commission_plan_versions') }}
-- depends_on: {{ ref('int_commission_plans__current') }}
-- depends_on: {{ ref('stg_commissions__closings') }}
-- depends_on: {{ ref('int_commissions__open_lines') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Commission lines (docs/contract.md §8.5, §8.6): the lines of closed periods
-- exactly as the ledger recorded them, and the open line each (deal, partner)
-- needs so that its lines add up to what is due now.
-- Incremental runs rewrite every line of the (organization, deal, partner) keys
-- whose due was recomputed (int_commissions__due) or that a close recorded since
-- the last run; each such key leaves a tombstone (line_type null), so a key left
-- without lines loses its rows. The pre-hook holds closes back for the length
-- of this transaction: the closings read here are the ones the watermark records.

{% if is_incremental() %}
    with changed_keys as (
        select * from {{ commission_changed_line_keys(watermark_value(this.identifier ~ '__closings'), closings_high_water()) }} as keys
    ),

    open_lines as (
        {{ commission_open_lines('changed_keys') }}
    ),
{% else %}
    with open_lines as (
        {{ commission_open_lines() }}
    ),
{% endif %}

lines as (
    select
        org_id,
        partner_id,
        deal_id,
        plan_id,
        attribution_model,
        line_type,
        amount_usd,
        period,
        'closed' as period_status,
        deal_closed_at
    from {{ ref('stg_commissions__ledger_lines') }}
    {% if is_incremental() %}
        where (org_id, deal_id, partner_id) in (select k.org_id, k.deal_id, k.partner_id from changed_keys as k)
    {% endif %}

    union all

    select
        org_id,
        partner_id,
        deal_id,
        plan_id,
        attribution_model,
        line_type,
        amount_usd,
        period,
        'open' as period_status,
        deal_closed_at
    from open_lines
)

select
    org_id,
    partner_id,
    deal_id,
    plan_id,
    attribution_model,
    line_type,
    amount_usd,
    period,
    period_status,
    deal_closed_at,
    now() as computed_at
from lines

{% if is_incremental() %}
    union all

    select
        org_id,
        partner_id,
        deal_id,
        null as plan_id,
        null as attribution_model,
        null as line_type,
        null as amount_usd,
        null as period,
        null as period_status,
        null as deal_closed_at,
        null as computed_at
    from changed_keys
{% endif %}
