{#- The models that read int_attribution__changed_deals, each with its own watermark. -#}
{% macro change_log_consumers() %}
    {{ return([
        "int_attribution__eligible_touchpoints",
        "fct_deals",
        "fct_partner_attribution",
        "partner_performance",
        "org_daily_metrics",
    ]) }}
{% endmacro %}

{#- Lowest watermark among the consumers that have one (null when none has). -#}
{% macro consumers_low_water() -%}
    (select min(batch_id) from {{ watermark_table() }}
     where model in ('{{ change_log_consumers() | join("', '") }}'))
{%- endmacro %}

{#- For a consumer's incremental run: the changed deals it has not processed yet. -#}
{% macro changed_deal_ids() -%}
    (select changes.deal_id from {{ ref('int_attribution__changed_deals') }} as changes
     where changes.detected_batch_id > {{ watermark_value() }})
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
