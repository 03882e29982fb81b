{#-
  The attribution models of docs/contract.md §4.2 are declared in one place: the
  dbt var `attribution_models` in dbt_project.yml, read here by dbt and by
  platform_core/attribution_models.py (ingestion checks that a commission plan
  names one of them). Each entry is the credit of
  one eligible touchpoint as an SQL expression over the columns of
  int_attribution__eligible_touchpoints and the deal's data-driven weights:
    position             1-based rank by (occurred_at, touchpoint_id)
    n                    eligible touchpoints on the deal
    decay_weight         0.5 ^ (age_days / half-life)
    decay_weight_sum     sum of decay_weight over the deal
    creation_position    the creation touch: the last touchpoint at or before the
                         deal's created_at, else the first one (position 1)
    milestone_count      distinct positions among 1, creation_position and n
    channel_weight       the weight of the touchpoint's channel in its organization
                         and closing month (int_attribution__markov_months)
    channel_weight_sum   sum of channel_weight over the deal
    data_driven_fallback the deal is credited as linear (docs/attribution.md)
  Adding a model = one entry here (plus a unit test and its partner_performance
  contract column); every model, mart column
  (partner_performance.attributed_revenue_usd_<model>) and test follows.
-#}
{% macro attribution_models() %}
    {%- set models = var("attribution_models") -%}
    {#- sqlfluff renders var() as a placeholder: lint one model's shape. -#}
    {{ return(models if models is mapping else {"first_touch": "1", "linear": "1.0 / n"}) }}
{% endmacro %}

{% macro attribution_model_names() %}
    {{ return(attribution_models().keys() | list) }}
{% endmacro %}

{#- The data-driven weight of a touchpoint's channel: its organization's weights
    of the UTC month its deal closed in (int_attribution__markov_months), joined
    with `join_channel_weights`; 0 for a channel the training set did not hold. -#}
{% macro channel_weight(months, touchpoints) -%}
    coalesce(({{ months }}.channels -> {{ touchpoints }}.touchpoint_type ->> 'weight')::numeric, 0)
{%- endmacro %}

{% macro join_channel_weights(months, touchpoints) -%}
    left join {{ ref('int_attribution__markov_months') }} as {{ months }}
        on
            {{ touchpoints }}.org_id = {{ months }}.org_id
            and date_trunc('month', {{ touchpoints }}.closed_at at time zone 'UTC')::date = {{ months }}.month
{%- endmacro %}
