{#-
  The attribution models of docs/contract.md §4.2, in one place. Each entry is the credit of
  one eligible touchpoint as an SQL expression over:
    position         1-based rank by (occurred_at, touchpoint_id)
    n                eligible touchpoints on the deal
    decay_weight     0.5 ^ (age_days / half-life)
    decay_weight_sum sum of decay_weight over the deal
  Adding a model = one entry here (plus a unit test); every model, mart column
  (partner_performance.attributed_revenue_usd_<model>) and test follows.
-#}
{% macro attribution_models() %}
    {{ return({
        "first_touch": "case when position = 1 then 1 else 0 end",
        "last_touch": "case when position = n then 1 else 0 end",
        "linear": "1.0 / n",
        "time_decay": "decay_weight / decay_weight_sum",
        "position_based": "case when n = 1 then 1 when n = 2 then 0.5 when position in (1, n) then 0.4 else 0.2 / (n - 2) end",
    }) }}
{% endmacro %}

{% macro attribution_model_names() %}
    {{ return(attribution_models().keys() | list) }}
{% endmacro %}
