-- Adding a model to macro attribution_models must add its column to the
-- partner_performance contract (models/marts/_marts__models.yml).
with expected as (
    {%- for model_name in attribution_model_names() %}
        select 'attributed_revenue_usd_{{ model_name }}' as column_name
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

actual as (
    select column_name::text as column_name
    from information_schema.columns
    where
        table_schema = '{{ ref("partner_performance").schema }}'
        and table_name = 'partner_performance'
        and column_name like 'attributed_revenue_usd_%'
)

(select column_name, 'missing' as problem from expected except select column_name, 'missing' from actual)
union all
(select column_name, 'unexpected' from actual except select column_name, 'unexpected' from expected)
