{{
    config(
        materialized="incremental",
        incremental_strategy="replace_keys",
        unique_key=["org_id", "month"],
        tombstone_column="training_paths",
        skip_unchanged=True,
        change_marker="detected_batch_id",
        on_schema_change="fail",
        indexes=[
            {"columns": ["org_id", "month"], "unique": True},
            {"columns": ["detected_batch_id"]},
        ],
        pre_hook=["{{ large_work_mem() }}", "{{ create_markov_solver() }}"],
        post_hook=[
            "{{ save_watermark(change_log_high_water(['int_attribution__path_slices'])) }}",
            "{{ analyze_after_rebuild() }}",
        ],
    )
}}
-- depends_on: {{ ref('int_attribution__changed_deals') }}
-- depends_on: {{ ref('int_deals__mart_state') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

{% set training_months = data_driven_training_months() | trim %}

-- The data-driven model's weights (docs/attribution.md, "Data-driven"): one row
-- per organization and UTC month in which it has won deals to credit, trained on
-- its deals closed in the twelve months before (int_attribution__path_slices),
-- solved exactly (macro create_markov_solver), or the reason its deals fall back
-- to linear credit. Incremental runs recompute the months a changed deal was
-- closed in and the twelve after it; a row whose result is unchanged is kept
-- as it was, and detected_batch_id marks the rows that did change, whose won deals
-- the crediting models then credit again (macro changed_deal_ids).

-- Candidate months, each flagged with whether the organization has won deals to credit in it.
with candidate_months as (
    {% if is_incremental() %}
        select
            changed.org_id,
            changed.month,
            exists(
                select
                from {{ ref('int_attribution__eligible_touchpoints') }} as won
                where
                    won.org_id = changed.org_id
                    and won.closed_at >= changed.month::timestamp at time zone 'UTC'
                    and won.closed_at < (changed.month + interval '1 month') at time zone 'UTC'
                    and won.is_won
            ) as has_won_deals
        from {{ changed_training_months() }} as changed
    {% else %}
        select distinct
            org_id,
            date_trunc('month', closed_at at time zone 'UTC')::date as month,
            true as has_won_deals
        from {{ ref('int_attribution__eligible_touchpoints') }}
        where is_won
    {% endif %}
),

credited_months as (
    select
        org_id,
        month
    from candidate_months
    where has_won_deals
),

-- Each month's training set from its own twelve slices, in a lateral subquery per
-- month: every join in it is between one month's few channels, whatever the
-- planner guesses about how many months there are.
training_sets as (
    select
        credited_months.org_id,
        credited_months.month,
        training.*
    from credited_months
    cross join lateral (
        with window_slices as (
            select slices.*
            from {{ ref('int_attribution__path_slices') }} as slices
            where
                slices.org_id = credited_months.org_id
                and slices.closed_month < credited_months.month
                and slices.closed_month >= (credited_months.month - interval '{{ training_months }} months')::date
        ),

        -- Channels numbered 1..k in a fixed order: the solver's indices.
        channels as (
            select
                channel,
                sum(paths) as paths,
                sum(conversions) as conversions,
                sum(starts) as starts,
                sum(ends_converted) as ends_converted,
                sum(ends_lost) as ends_lost,
                row_number() over (order by channel collate "C")::integer as channel_index
            from window_slices
            group by channel
        ),

        edges as (
            select
                origin.channel_index as edge_from,
                target.channel_index as edge_to,
                sum(next_channels.value::bigint) as transitions
            from window_slices
            cross join lateral jsonb_each_text(window_slices.next_channels) as next_channels
            inner join channels as origin on window_slices.channel = origin.channel
            inner join channels as target on next_channels.key = target.channel
            group by origin.channel_index, target.channel_index
        )

        select
            coalesce((select sum(channels.starts) from channels), 0) as training_paths,
            coalesce((select sum(channels.ends_converted) from channels), 0) as training_conversions,
            (select count(*) from channels) as channel_count,
            (select array_agg(channels.channel order by channels.channel_index) from channels) as channel_names,
            (select array_agg(channels.paths order by channels.channel_index) from channels) as channel_paths,
            (select array_agg(channels.conversions order by channels.channel_index) from channels)
                as channel_conversions,
            (select array_agg(channels.starts::double precision order by channels.channel_index) from channels)
                as starts,
            (
                select array_agg(channels.ends_converted::double precision order by channels.channel_index)
                from channels
            ) as ends_converted,
            (select array_agg(channels.ends_lost::double precision order by channels.channel_index) from channels)
                as ends_lost,
            (select array_agg(edges.edge_from order by edges.edge_from, edges.edge_to) from edges) as edge_from,
            (select array_agg(edges.edge_to order by edges.edge_from, edges.edge_to) from edges) as edge_to,
            (
                select array_agg(edges.transitions::double precision order by edges.edge_from, edges.edge_to)
                from edges
            ) as edge_count
    ) as training
),

assessed as (
    select
        training_sets.*,
        case
            when training_sets.training_paths < {{ var('data_driven_min_paths') }}
                then 'fewer than {{ var("data_driven_min_paths") }} training paths'
            when training_sets.training_conversions = 0
                then 'no won deal in the training window'
            when training_sets.channel_count > {{ var('data_driven_max_channels') }}
                then 'more than {{ var("data_driven_max_channels") }} channels in the training window'
        end as fallback_reason
    from training_sets
),

solved as (
    select
        assessed.*,
        chain.conversion_probability,
        chain.removal_effects,
        (select sum(effect) from unnest(chain.removal_effects) as effect) as removal_effect_sum
    from assessed
    left join lateral (
        select solution.*
        from
            {{ this.schema }}.markov_removal_effects(
                assessed.starts,
                assessed.ends_converted,
                assessed.ends_lost,
                coalesce(assessed.edge_from, '{}'),
                coalesce(assessed.edge_to, '{}'),
                coalesce(assessed.edge_count, '{}')
            ) as solution
        where assessed.fallback_reason is null
    ) as chain on true
)

select
    solved.org_id,
    solved.month,
    solved.training_paths,
    solved.training_conversions,
    solved.channel_count,
    trim_scale(round(solved.conversion_probability::numeric, 10)) as conversion_probability,
    case
        when solved.fallback_reason is not null then solved.fallback_reason
        when not solved.removal_effect_sum > 0 then 'no won deal in the training window'
    end as fallback_reason,
    case
        when solved.removal_effect_sum > 0 then (
            select
                jsonb_object_agg(
                    channel.name,
                    jsonb_build_object(
                        'paths', solved.channel_paths[channel.channel_index],
                        'conversions', solved.channel_conversions[channel.channel_index],
                        'removal_effect',
                        trim_scale(round(solved.removal_effects[channel.channel_index]::numeric, 10)),
                        'weight',
                        trim_scale(round(
                            (solved.removal_effects[channel.channel_index] / solved.removal_effect_sum)::numeric,
                            10
                        ))
                    )
                )
            from unnest(solved.channel_names) with ordinality as channel (name, channel_index)
        )
    end as channels,
    {{ change_log_high_water(['int_attribution__path_slices']) }} as detected_batch_id,
    now() as computed_at
from solved

{% if is_incremental() %}
    union all
    -- Tombstones: the candidate months without won deals to credit (any longer).
    select
        candidate_months.org_id,
        candidate_months.month,
        null as training_paths,
        null as training_conversions,
        null as channel_count,
        null as conversion_probability,
        null as fallback_reason,
        null as channels,
        null as detected_batch_id,
        null as computed_at
    from candidate_months
    where not candidate_months.has_won_deals
{% endif %}
