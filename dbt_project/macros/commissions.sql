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
