{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key=["org_id", "month"],
        tombstone_column="channel",
        on_schema_change="fail",
        indexes=[{"columns": ["org_id", "month", "channel"], "unique": True}],
        post_hook=[
            "{{ hide_statistics_from_tenants() }}",
            "{{ save_watermark(change_log_high_water(['int_attribution__markov_months'])) }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The data-driven weights in use (docs/contract.md §5.8): per organization and
-- month whose won deals are credited by channel weights, one row per channel of
-- the training set. Months whose deals fall back to linear credit have no rows
-- (fct_deals.data_driven_fallback_reason says why). Incremental runs rewrite the
-- months int_attribution__markov_months may have changed.

{% if is_incremental() %}
    with candidate_months as (
        select * from {{ changed_training_months() }} as changed
    )
{% endif %}

select
    months.org_id,
    months.month,
    channels.key as channel,
    (channels.value ->> 'paths')::bigint as paths,
    (channels.value ->> 'conversions')::bigint as conversions,
    (channels.value ->> 'removal_effect')::numeric as removal_effect,
    (channels.value ->> 'weight')::numeric as weight,
    months.computed_at
from {{ ref('int_attribution__markov_months') }} as months
cross join lateral jsonb_each(months.channels) as channels
where
    months.fallback_reason is null
    {% if is_incremental() %}
        and (months.org_id, months.month) in (select candidate_months.org_id, candidate_months.month from candidate_months)
    {% endif %}

{% if is_incremental() %}
    union all
    -- Tombstones: every candidate month, so a month whose weights went out of use loses its rows.
    select
        candidate_months.org_id,
        candidate_months.month,
        null as channel,
        null as paths,
        null as conversions,
        null as removal_effect,
        null as weight,
        null as computed_at
    from candidate_months
{% endif %}
