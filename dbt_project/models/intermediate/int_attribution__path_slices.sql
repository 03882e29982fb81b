{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key=["org_id", "closed_month"],
        tombstone_column="channel",
        on_schema_change="fail",
        indexes=[{"columns": ["org_id", "closed_month"]}],
        pre_hook="{{ large_work_mem() }}",
        post_hook=[
            "{{ save_watermark(change_log_high_water(['int_deals__mart_state', 'int_attribution__eligible_touchpoints'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- The data-driven model's paths (docs/attribution.md, "Data-driven"), summed per
-- organization, UTC month of closing and channel: one slice per (organization,
-- month), so a training set of twelve months adds up twelve small slices rather
-- than re-reading twelve months of touchpoints. A path is the channels
-- (touchpoint types) of a closed deal's eligible touchpoints in order, a repeat
-- of the previous channel collapsed into it; won ends in conversion, lost in null.
-- Incremental runs rebuild the slices a changed deal is in or has left.

with
{% if is_incremental() %}
    changed_slices as (
        select
            changed.org_id,
            changed.month as closed_month
        from {{ changed_org_months() }} as changed
    ),
{% endif %}

touchpoints as (
    select
        eligible.org_id,
        date_trunc('month', eligible.closed_at at time zone 'UTC')::date as closed_month,
        eligible.deal_id,
        eligible.is_won,
        eligible.position,
        eligible.touchpoint_type as channel,
        lag(eligible.touchpoint_type) over (partition by eligible.deal_id order by eligible.position) as previous_channel
    from {{ ref('int_attribution__eligible_touchpoints') }} as eligible
    {% if is_incremental() %}
        inner join changed_slices
            on
                eligible.org_id = changed_slices.org_id
                and eligible.closed_at >= changed_slices.closed_month::timestamp at time zone 'UTC'
                and eligible.closed_at < (changed_slices.closed_month + interval '1 month') at time zone 'UTC'
    {% endif %}
    where eligible.touchpoint_id is not null
),

-- One row per step of a collapsed path, with the channel that follows it (null: the path ends).
steps as (
    select
        org_id,
        closed_month,
        deal_id,
        is_won,
        channel,
        row_number() over deal_path = 1 as is_first,
        lead(channel) over deal_path as next_channel
    from touchpoints
    where previous_channel is distinct from channel
    window deal_path as (partition by deal_id order by position)
),

transitions as (
    select
        org_id,
        closed_month,
        channel,
        next_channel,
        count(*) as transitions,
        count(*) filter (where is_first) as starts,
        count(*) filter (where next_channel is null and is_won) as ends_converted,
        count(*) filter (where next_channel is null and not is_won) as ends_lost
    from steps
    group by org_id, closed_month, channel, next_channel
),

channel_transitions as (
    select
        org_id,
        closed_month,
        channel,
        sum(starts) as starts,
        sum(ends_converted) as ends_converted,
        sum(ends_lost) as ends_lost,
        coalesce(
            jsonb_object_agg(next_channel, transitions) filter (where next_channel is not null), '{}'
        ) as next_channels
    from transitions
    group by org_id, closed_month, channel
),

channel_paths as (
    select
        org_id,
        closed_month,
        channel,
        count(distinct deal_id) as paths,
        count(distinct deal_id) filter (where is_won) as conversions
    from steps
    group by org_id, closed_month, channel
)

select
    channel_paths.org_id,
    channel_paths.closed_month,
    channel_paths.channel,
    channel_paths.paths,
    channel_paths.conversions,
    channel_transitions.starts,
    channel_transitions.ends_converted,
    channel_transitions.ends_lost,
    channel_transitions.next_channels
from channel_paths
inner join channel_transitions
    on
        channel_paths.org_id = channel_transitions.org_id
        and channel_paths.closed_month = channel_transitions.closed_month
        and channel_paths.channel = channel_transitions.channel

{% if is_incremental() %}
    union all
    -- Tombstones: every changed slice, so one that lost all its paths loses its rows.
    select
        changed_slices.org_id,
        changed_slices.closed_month,
        null as channel,
        null as paths,
        null as conversions,
        null as starts,
        null as ends_converted,
        null as ends_lost,
        null as next_channels
    from changed_slices
{% endif %}
