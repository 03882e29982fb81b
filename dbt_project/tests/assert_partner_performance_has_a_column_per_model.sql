{{ config(meta={"dagster": {"ref": {"name": "partner_performance"}}}) }}
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
),

missing as (
    select column_name from expected
    except
    select column_name from actual
),

unexpected as (
    select column_name from actual
    except
    select column_name from expected
)

select
    column_name,
    'missing' as problem
from missing
union all
select
    column_name,
    'unexpected' as problem
from unexpected
