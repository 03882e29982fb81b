{#- Display text that a spreadsheet shows instead of running (OWASP CSV injection):
    a value starting with =, +, -, @, a tab or a carriage return gets a leading
    single quote, so `=HYPERLINK(...)` reaches the marts as `'=HYPERLINK(...)`.
    Raw keeps the text as read; identifiers starting like that never get this
    far (ingestion quarantines them). The characters match FORMULA_PREFIXES in
    ingestion/contracts.py. -#}
{% macro spreadsheet_safe(column) -%}
    case
        when left({{ column }}, 1) in ('=', '+', '-', '@', chr(9), chr(13)) then '''' || {{ column }}
        else {{ column }}
    end
{%- endmacro %}
