{#- Use the folder's schema name as is (staging, intermediate, marts), not
    "<target schema>_<name>": BI tools and docs refer to `marts.*`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name is not none else target.schema }}
{%- endmacro %}
