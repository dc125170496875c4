{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view over the lake: nothing is stored twice. A filter on snapshot_date reaches the lake
-- scans as a partition filter, so a day's rows cost a day's files.

with

cohort_positions as (

    select * from {{ ref('int_cohort_positions_completed') }}

),

-- Each ladder partitions the coin's positions: a cohort's share of its ladder's total is its
-- share of the coin's open interest.
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
