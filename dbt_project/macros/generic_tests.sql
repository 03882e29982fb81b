{#- Small generic tests we need (no dbt packages can be installed here). -#}

{% test unique_combination(model, columns) %}
    select {{ columns | join(", ") }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(", ") }}
    having count(*) > 1
{% endtest %}
