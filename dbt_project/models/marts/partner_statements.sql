{{
    config(
        materialized="incremental",
        unique_key=["org_id", "partner_id", "period"],
        incremental_strategy="replace_keys",
        skip_unchanged=True,
        tombstone_column="line_count",
        on_schema_change="fail",
        indexes=[
            {"columns": ["org_id", "partner_id", "period"], "unique": True},
            {"columns": ["org_id", "period"]},
        ],
        post_hook=[
            "{{ hide_statistics_from_tenants(counts=['org_id', 'partner_id', 'period']) }}",
            "{{ save_watermark(change_log_high_water(['fct_commission_lines'])) }}",
            "{{ save_watermark(watermark('fct_commission_lines__closings'), suffix='__closings') }}",
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
-- depends_on: {{ ref('stg_commissions__ledger_lines') }}
-- depends_on: {{ ref('stg_commissions__closings') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- One statement per partner and period (docs/contract.md §8.6): its earned lines,
-- its adjustments and their total, from fct_commission_lines.
-- Incremental runs recompute, for each partner with a rewritten line key, its
-- open periods (after the organization's last closed one, as fct_commission_lines
-- saw the closings): a key's lines in closed periods never change, and its open
-- line can only be in an open period. And the (organization, partner, period)
-- statements of the closings fct_commission_lines absorbed since this model's
-- last run; and every statement of a partner whose record changed (its name).
-- A statement left without lines leaves a tombstone.

{% if is_incremental() %}
    {% set closings_after = watermark_value(this.identifier ~ '__closings') %}
    {% set closings_through = watermark_value('fct_commission_lines__closings') %}
    with last_closed as (
        select
            org_id,
            max(period) as period
        from {{ ref('stg_commissions__closings') }}
        where closing_id <= {{ closings_through }}
        group by org_id
    ),

    changed_partners as (
        select distinct
            keys.org_id,
            keys.partner_id
        from {{ commission_changed_line_keys(closings_after, closings_through) }} as keys
    ),

    open_periods as (
        select
            changed_partners.org_id,
            changed_partners.partner_id,
            known.period
        from changed_partners
        left join last_closed on changed_partners.org_id = last_closed.org_id
        cross join lateral (
            select lines.period
            from {{ ref('fct_commission_lines') }} as lines
            where
                lines.org_id = changed_partners.org_id
                and lines.partner_id = changed_partners.partner_id
                and lines.period > coalesce(last_closed.period, '-infinity'::date)
            union
            select statements.period
            from {{ this }} as statements
            where
                statements.org_id = changed_partners.org_id
                and statements.partner_id = changed_partners.partner_id
                and statements.period > coalesce(last_closed.period, '-infinity'::date)
        ) as known
    ),

    changed_statements as (
        select
            open_periods.org_id,
            open_periods.partner_id,
            open_periods.period
        from open_periods
        union
        select
            lines.org_id,
            lines.partner_id,
            lines.period
        from {{ ref('stg_commissions__ledger_lines') }} as lines
        where lines.closing_id > {{ closings_after }} and lines.closing_id <= {{ closings_through }}
        union
        -- a partner whose record changed (its name): all its statements
        select
            statements.org_id,
            statements.partner_id,
            statements.period
        from {{ this }} as statements
        where statements.partner_id in (
            select partners.partner_id
            from {{ ref('int_partners__current') }} as partners
            where partners.batch_id > {{ watermark_value() }}
        )
    ),
{% else %}
    with
{% endif %}

statements as (
    select
        lines.org_id,
        lines.partner_id,
        lines.period,
        min(lines.period_status) as period_status,
        -- 0.00, not 0: money in cents whatever the sum (docs/contract.md §5.7).
        coalesce(sum(lines.amount_usd) filter (where lines.line_type = 'earned'), 0.00) as earned_usd,
        coalesce(sum(lines.amount_usd) filter (where lines.line_type = 'adjustment'), 0.00) as adjustments_usd,
        sum(lines.amount_usd) as total_usd,
        count(*) as line_count
    from {{ ref('fct_commission_lines') }} as lines
    {% if is_incremental() %}
        where (lines.org_id, lines.partner_id, lines.period) in (
            select changed_statements.org_id, changed_statements.partner_id, changed_statements.period
            from changed_statements
        )
    {% endif %}
    group by lines.org_id, lines.partner_id, lines.period
),

keyed as (
    {% if is_incremental() %}
        select
            changed_statements.org_id,
            changed_statements.partner_id,
            changed_statements.period,
            statements.period_status,
            statements.earned_usd,
            statements.adjustments_usd,
            statements.total_usd,
            statements.line_count
        from changed_statements
        left join statements
            on
                changed_statements.org_id = statements.org_id
                and changed_statements.partner_id = statements.partner_id
                and changed_statements.period = statements.period
    {% else %}
        select
            statements.org_id,
            statements.partner_id,
            statements.period,
            statements.period_status,
            statements.earned_usd,
            statements.adjustments_usd,
            statements.total_usd,
            statements.line_count
        from statements
    {% endif %}
)

select
    keyed.org_id,
    keyed.partner_id,
    partners.partner_name,
    keyed.period,
    keyed.period_status,
    keyed.earned_usd,
    keyed.adjustments_usd,
    keyed.total_usd,
    keyed.line_count,
    now() as computed_at
from keyed
left join {{ ref('int_partners__current') }} as partners
    on keyed.partner_id = partners.partner_id and keyed.org_id = partners.org_id
