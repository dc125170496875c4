{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        meta={'publish': 'append'},
    )
}}

-- Append-only by load: each run adds the loads newer than the newest one here. The filter
-- is a literal on _load_id and comes first, so it reaches both raw scans behind
-- int_cohort_positions_completed and zone maps skip the older loads
-- (macros/incremental_helpers.sql says why a literal).

with

cohort_positions as (

    select * from {{ ref('int_cohort_positions_completed') }}

    {% if is_incremental() %}
        where _load_id > {{ incremental_watermark('_load_id') }}
    {% endif %}

),

-- Each ladder partitions the coin's positions: a cohort's share of its ladder's total is its
-- share of the coin's open interest (a group-by and join: about twice as fast here as a
-- window function over the same partition).
ladder_totals as (

    select
        snapshot_id,
        "window",
        coin,
        ladder,
        sum(total_usd) as ladder_total_usd

    from cohort_positions

    group by snapshot_id, "window", coin, ladder

),

final as (

    select
        cohort_positions.snapshot_id,
        cohort_positions."window",
        cohort_positions.coin,
        cohort_positions.segment_id,
        cohort_positions.ladder,
        cohort_positions.last_update,
        cohort_positions.snapshot_date,
        cohort_positions.is_reported,
        cohort_positions.long_usd,
        cohort_positions.short_usd,
        cohort_positions.total_usd,
        cohort_positions.long_usd - cohort_positions.short_usd as net_usd,
        cohort_positions.long_positions,
        cohort_positions.short_positions,
        cohort_positions.total_positions,
        cohort_positions.api_bias,
        {{ safe_ratio('cohort_positions.long_usd', 'cohort_positions.total_usd') }} as bias,
        2 * {{ safe_ratio('cohort_positions.long_usd', 'cohort_positions.total_usd') }}
        - 1 as net_bias,
        {{ safe_ratio('cohort_positions.long_positions', 'cohort_positions.total_positions') }}
            as long_positions_share,
        {{ safe_ratio('cohort_positions.total_usd', 'ladder_totals.ladder_total_usd') }}
            as ladder_oi_share,
        cohort_positions._load_id

    from cohort_positions

    inner join ladder_totals
        on
            cohort_positions.snapshot_id = ladder_totals.snapshot_id
            and cohort_positions."window" = ladder_totals."window"
            and cohort_positions.coin = ladder_totals.coin
            and cohort_positions.ladder = ladder_totals.ladder

)

select * from final
