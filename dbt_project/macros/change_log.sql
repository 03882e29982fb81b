{#- The models that read int_attribution__changed_deals, each with its own watermark. -#}
{% macro change_log_consumers() %}
    {{ return([
        "int_attribution__eligible_touchpoints",
        "int_attribution__path_slices",
        "int_attribution__markov_months",
        "attribution_channel_weights",
        "fct_deals",
        "fct_partner_attribution",
        "int_partners__deal_contributions",
        "int_partners__monthly_performance",
        "partner_performance",
        "org_daily_metrics",
        "int_commissions__due",
        "fct_commission_lines",
        "partner_statements",
    ]) }}
{% endmacro %}

{#- Lowest watermark among the consumers that have one (null when none has). -#}
{% macro consumers_low_water() -%}
    (select min(batch_id) from {{ watermark_table() }}
     where model in ('{{ change_log_consumers() | join("', '") }}'))
{%- endmacro %}

{#- For a consumer's incremental run: the changed deals it has not processed yet.
    `reweighted=True` (the models that credit deals, downstream of
    int_attribution__markov_months): also the won deals of every (organization,
    month) whose data-driven weights changed since, which must be credited again
    although nothing of their own changed. -#}
{% macro changed_deal_ids(reweighted=false) -%}
    (select changes.deal_id from {{ ref('int_attribution__changed_deals') }} as changes
     where changes.detected_batch_id > {{ watermark_value() }}
     {%- if reweighted %}
     union
     select won.deal_id
     from {{ ref('int_attribution__markov_months') }} as reweighted
     inner join {{ ref('int_attribution__eligible_touchpoints') }} as won
         on won.org_id = reweighted.org_id
         and won.closed_at >= reweighted.month::timestamp at time zone 'UTC'
         and won.closed_at < (reweighted.month + interval '1 month') at time zone 'UTC'
     where reweighted.detected_batch_id > {{ watermark_value() }} and won.is_won
     {%- endif %})
{%- endmacro %}

{#- The (organization, UTC month) pairs a changed deal has ever been closed in
    (int_deals__mart_state keeps every organization and closing month a deal has
    had): the path slices and training sets it may have left or joined. A deal
    that was never closed (a new open deal) has none. -#}
{% macro changed_org_months() -%}
    (select distinct
        orgs.org_id,
        months.month
    from {{ ref('int_deals__mart_state') }} as state
    cross join lateral unnest(state.org_ids) as orgs (org_id)
    cross join lateral unnest(state.closed_months) as months (month)
    where state.deal_id in {{ changed_deal_ids() }})
{%- endmacro %}

{#- What a consumer has processed after this run: the log's entries, but no further
    than the consumers it reads from have applied them (a model built alone, after
    an upstream consumer failed, re-reads those entries next time). -#}
{% macro change_log_high_water(upstream_consumers=[]) -%}
    least(
        {{ watermark('int_attribution__changed_deals') }}
        {%- for upstream in upstream_consumers %},
        {{ watermark(upstream) }}
        {%- endfor %}
    )
{%- endmacro %}

{#- Batch up to which all four state tables have absorbed raw data. -#}
{% macro absorbed_high_water() -%}
    (select coalesce(min(batch_id), 0) from {{ watermark_table() }}
     where model in ('int_deals__current', 'int_touchpoints__current',
                     'int_partners__current', 'int_fx_rates__current'))
{%- endmacro %}

{#- org_daily_metrics: on an incremental run, keep the rows of the changed
    (organization, day) keys; on a full build, every row. -#}
{% macro in_changed_org_days(org_column, date_column) -%}
    {%- if is_incremental() -%}
        ({{ org_column }}, {{ date_column }}) in (select changed_keys.org_id, changed_keys.metric_date from changed_keys)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- How many months of closed deals train the data-driven weights of the month
    after them (docs/attribution.md, "Data-driven"). -#}
{% macro data_driven_training_months() -%}
    12
{%- endmacro %}

{#- The (organization, month) training sets and credited months a changed deal
    may affect: the months it has been closed in and the twelve after each. -#}
{% macro changed_training_months() -%}
    (select distinct
        changed.org_id,
        (changed.month + make_interval(months => shift.months))::date as month
    from {{ changed_org_months() }} as changed
    cross join generate_series(0, {{ data_driven_training_months() }}) as shift (months))
{%- endmacro %}
