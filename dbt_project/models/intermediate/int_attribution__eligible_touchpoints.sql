{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key="deal_id",
        tombstone_column="touchpoint_id",
        on_schema_change="fail",
        indexes=[{"columns": ["deal_id"]}, {"columns": ["org_id", "closed_at"]}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=["{{ save_watermark(change_log_high_water()) }}", "{{ analyze_after_rebuild() }}"],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The touchpoints that may earn credit on a closed deal (docs/contract.md §4.1), ranked:
-- same deal and organization as the deal, a partner of that organization, and
-- occurred within [closed_at - lookback, closed_at]. Incremental runs rebuild
-- only the deals in the change log; a deal that no longer has eligible
-- touchpoints leaves a tombstone (touchpoint_id null) that removes its old rows.

with deals as (
    select
        deal_id,
        org_id,
        created_at,
        closed_at,
        status = 'won' as is_won
    from {{ ref('int_deals__current') }}
    where
        status in ('won', 'lost')
        and closed_at is not null
        {% if is_incremental() %}and deal_id in {{ changed_deal_ids() }}{% endif %}
),

eligible as (
    select
        deals.deal_id,
        deals.org_id,
        deals.created_at,
        deals.closed_at,
        deals.is_won,
        touchpoints.touchpoint_id,
        touchpoints.partner_id,
        touchpoints.touchpoint_type,
        touchpoints.occurred_at,
        trim_scale(extract(epoch from deals.closed_at - touchpoints.occurred_at) / 86400.0) as age_days
    from deals
    inner join {{ ref('int_touchpoints__current') }} as touchpoints
        on deals.deal_id = touchpoints.deal_id and {{ same_org('deals.org_id', 'touchpoints.org_id') }}
    inner join {{ ref('int_partners__current') }} as partners
        on touchpoints.partner_id = partners.partner_id and {{ same_org('deals.org_id', 'partners.org_id') }}
    where
        touchpoints.occurred_at <= deals.closed_at
        and touchpoints.occurred_at
        >= deals.closed_at - make_interval(secs => {{ var('attribution_lookback_days') }} * 86400)
),

ranked as (
    select
        *,
        row_number() over (
            partition by deal_id order by occurred_at, touchpoint_id collate "C"
        ) as position,
        count(*) over (partition by deal_id) as n,
        -- Relative to the youngest touchpoint: the same normalized credits as
        -- 0.5^(age/H), and the youngest weighs 1. power() in double precision
        -- (15 significant digits, far inside the 1e-9 the credits must sum to):
        -- numeric power() costs ~30 µs a row, most of this model's time on a
        -- hyper month. The exponent is capped at 1000 (a weight of ~1e-301, where
        -- a double would underflow): such a touchpoint keeps a positive credit.
        -- Stored as numeric, so the sum below is exact in any order.
        power(
            0.5,
            least(
                (age_days - min(age_days) over (partition by deal_id))
                / {{ var('time_decay_half_life_days') }},
                1000
            )::double precision
        )::numeric as decay_weight
    from eligible
)

select
    deal_id,
    org_id,
    closed_at,
    is_won,
    touchpoint_id,
    partner_id,
    touchpoint_type,
    occurred_at,
    age_days,
    position,
    n,
    decay_weight,
    sum(decay_weight) over (partition by deal_id) as decay_weight_sum,
    -- W-shaped's creation touch: the last touchpoint at or before the deal's
    -- creation; when every touchpoint came after it, the first one.
    coalesce(
        max(position) filter (where occurred_at <= created_at) over (partition by deal_id), 1
    ) as creation_position
from ranked

{% if is_incremental() %}
    union all
    -- Tombstones: every changed deal, so its old rows go even when it has none now.
    select
        deal_id,
        null as org_id,
        null as closed_at,
        null as is_won,
        null as touchpoint_id,
        null as partner_id,
        null as touchpoint_type,
        null as occurred_at,
        null as age_days,
        null as position,
        null as n,
        null as decay_weight,
        null as decay_weight_sum,
        null as creation_position
    from (select distinct deal_id from {{ changed_deal_ids() }} as c) as changed_deals
{% endif %}
