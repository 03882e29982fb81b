{#- Money rounded to cents half to even (banker's rounding, docs/contract.md §8.2):
    numeric round() goes half away from zero, so an exact half cent goes to the
    even neighbour here. × 0.01, not / 100 (see fct_partner_attribution). -#}
{% macro round_half_even_cents(amount) -%}
    (case
        when abs({{ amount }} * 100 - trunc({{ amount }} * 100)) = 0.5 and mod(trunc({{ amount }} * 100), 2) = 0
            then trunc({{ amount }} * 100)
        else round({{ amount }} * 100)
    end * 0.01)
{%- endmacro %}

{#- The deals whose commission due an incremental run recomputes, as (org_id,
    deal_id): the changed deals (int_deals__mart_state gives their current
    organization), and the won deals a plan changed since the model's watermark
    may apply to (commission_plan_change_windows). -#}
{% macro commission_changed_deals() -%}
    (select
        state.org_id,
        state.deal_id
    from {{ ref('int_deals__mart_state') }} as state
    where state.deal_id in {{ changed_deal_ids(reweighted=true) }}
    union
    select
        deals.org_id,
        deals.deal_id
    from {{ ref('fct_deals') }} as deals
    inner join {{ commission_plan_change_windows() }} as windows
        on
            deals.org_id = windows.org_id
            and deals.closed_date >= windows.starts_on
            and deals.closed_date < windows.ends_before
    where deals.is_won)
{%- endmacro %}

{#- Where plans changed since the model's watermark: (org_id, starts_on,
    ends_before) date ranges outside which no won deal's plan can have changed.
    A plan only ever applies to deals closed within its effective dates, so a
    changed plan matters only to deals its version before (the current one among
    those loaded up to the watermark) or its version now covers: all of both when
    anything but the dates changed (compared column by column, whatever columns a
    plan has), else only the days between the old and the new
    bounds. A plan whose end moves from open to today then costs the deals closed
    from today, not the organization's whole history. Open bounds are infinite. -#}
{% macro commission_plan_change_windows() -%}
    {%- set versions = ref('stg_crm__commission_plan_versions') -%}
    {%- set watermark = watermark_value() -%}
    {#- What a version says besides its dates: every column but these. -#}
    {%- set not_terms = "array['plan_id', 'effective_from', 'effective_to', 'updated_at', 'batch_id', 'line_no']" -%}
    (with changed_plans as (
        select distinct plan_id
        from {{ versions }}
        where batch_id > {{ watermark }}
    ),

    plan_before as (
        -- The current version among those loaded up to the watermark (the order of
        -- stg_crm__commission_plans); none for a plan that is new since.
        select distinct on (versions.plan_id) versions.*
        from {{ versions }} as versions
        where
            versions.plan_id in (select changed_plans.plan_id from changed_plans)
            and versions.batch_id <= {{ watermark }}
        order by versions.plan_id, versions.updated_at desc, versions.batch_id desc, versions.line_no desc
    ),

    plan_changes as (
        select
            plan_now.org_id,
            coalesce(plan_now.effective_from, '-infinity'::date) as starts_on,
            coalesce(plan_now.effective_to, 'infinity'::date) as ends_before,
            plan_before.org_id as before_org_id,
            coalesce(plan_before.effective_from, '-infinity'::date) as before_starts_on,
            coalesce(plan_before.effective_to, 'infinity'::date) as before_ends_before,
            (
                plan_before.plan_id is null
                or (to_jsonb(plan_before) - {{ not_terms }}) is distinct from (to_jsonb(plan_now) - {{ not_terms }})
            ) as terms_changed
        from {{ ref('int_commission_plans__current') }} as plan_now
        left join plan_before on plan_now.plan_id = plan_before.plan_id
        where plan_now.plan_id in (select changed_plans.plan_id from changed_plans)
    )

    select
        org_id,
        starts_on,
        ends_before
    from plan_changes
    where terms_changed
    union all
    select
        before_org_id,
        before_starts_on,
        before_ends_before
    from plan_changes
    where terms_changed and before_org_id is not null
    union all
    select
        org_id,
        least(starts_on, before_starts_on),
        greatest(starts_on, before_starts_on)
    from plan_changes
    where not terms_changed and starts_on <> before_starts_on
    union all
    select
        org_id,
        least(ends_before, before_ends_before),
        greatest(ends_before, before_ends_before)
    from plan_changes
    where not terms_changed and ends_before <> before_ends_before)
{%- endmacro %}

{#- The (org_id, deal_id, partner_id) keys whose commission lines an incremental
    run rewrites: every organization and partner a recomputed deal has ever had
    (its old lines may sit under either), and the keys of the closings recorded
    after `closings_after` and up to `closings_through` (closing ids). -#}
{% macro commission_changed_line_keys(closings_after, closings_through) -%}
    (select
        orgs.org_id,
        state.deal_id,
        partners.partner_id
    from {{ ref('int_deals__mart_state') }} as state
    cross join lateral unnest(state.org_ids) as orgs (org_id)
    cross join lateral unnest(state.partner_ids) as partners (partner_id)
    where state.deal_id in (select changed.deal_id from {{ commission_changed_deals() }} as changed)
    union
    select
        lines.org_id,
        lines.deal_id,
        lines.partner_id
    from {{ ref('stg_commissions__ledger_lines') }} as lines
    where lines.closing_id > {{ closings_after }} and lines.closing_id <= {{ closings_through }})
{%- endmacro %}

{#- The highest closing id recorded now (0 when none), as a number. -#}
{% macro closings_high_water() -%}
    {{- batch_value("(select max(closing_id) from " ~ ref('stg_commissions__closings') ~ ")") -}}
{%- endmacro %}

{#- Holds closes back while a commission mart's transaction runs (the key is
    the close's, handed over by `attribution-dbt`): the closings the model reads
    are exactly those its watermark then records. -#}
{% macro hold_commission_closes() %}
    select pg_advisory_xact_lock_shared(
        hashtext('{{ env_var("ATTRIBUTION_CLOSE_LOCK_KEY") | replace("'", "''") }}'))
{% endmacro %}

{#- The open line each (deal, partner) needs (docs/contract.md §8.5), for every
    key or, with `keys` (a relation or CTE of org_id, deal_id, partner_id), for
    those keys only: what is due now minus what closed periods booked, when not
    zero. Never booked: an `earned` line in the period of closed_at + holding
    days, or in the organization's earliest open period when that one is already
    closed (a deal won late). Booked before: an `adjustment` line in the earliest
    open period, the month after the organization's last closed one. -#}
{% macro commission_open_lines(keys=none) -%}
    {%- set key_filter -%}
        {%- if keys -%}
            where (org_id, deal_id, partner_id) in (select k.org_id, k.deal_id, k.partner_id from {{ keys }} as k)
        {%- endif -%}
    {%- endset -%}
    with last_closed as (
        select
            org_id,
            max(period) as period
        from {{ ref('stg_commissions__closings') }}
        {% if keys %}where org_id in (select k.org_id from {{ keys }} as k){% endif %}
        group by org_id
    ),

    booked as (
        select
            org_id,
            deal_id,
            partner_id,
            sum(amount_usd) as booked_usd,
            (array_agg(plan_id order by period desc, line_type desc))[1] as plan_id,
            (array_agg(attribution_model order by period desc, line_type desc))[1] as attribution_model,
            (array_agg(deal_closed_at order by period desc, line_type desc))[1] as deal_closed_at
        from {{ ref('stg_commissions__ledger_lines') }}
        {{ key_filter }}
        group by org_id, deal_id, partner_id
    ),

    due as (
        select *
        from {{ ref('int_commissions__due') }}
        {{ key_filter }}
    ),

    differences as (
        select
            coalesce(due.org_id, booked.org_id) as org_id,
            coalesce(due.deal_id, booked.deal_id) as deal_id,
            coalesce(due.partner_id, booked.partner_id) as partner_id,
            coalesce(due.plan_id, booked.plan_id) as plan_id,
            coalesce(due.attribution_model, booked.attribution_model) as attribution_model,
            coalesce(due.deal_closed_at, deals.closed_at, booked.deal_closed_at) as deal_closed_at,
            due.earned_period,
            booked.deal_id is null as never_booked,
            coalesce(due.due_usd, 0) - coalesce(booked.booked_usd, 0) as amount_usd
        from due
        full outer join booked
            on
                due.org_id = booked.org_id
                and due.deal_id = booked.deal_id
                and due.partner_id = booked.partner_id
        left join {{ ref('fct_deals') }} as deals
            on booked.org_id = deals.org_id and booked.deal_id = deals.deal_id
    )

    select
        differences.org_id,
        case
            when differences.never_booked
                then greatest(differences.earned_period, (last_closed.period + interval '1 month')::date)
            else (last_closed.period + interval '1 month')::date
        end as period,
        differences.deal_id,
        differences.partner_id,
        case when differences.never_booked then 'earned' else 'adjustment' end as line_type,
        differences.plan_id,
        differences.attribution_model,
        differences.amount_usd,
        differences.deal_closed_at
    from differences
    left join last_closed on differences.org_id = last_closed.org_id
    where differences.amount_usd <> 0
{%- endmacro %}
