{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view over the lake: nothing is stored twice. A filter on snapshot_date (or on
-- snapshot_date and snapshot_id) reaches the lake scans, so a day's rows cost a day's files
-- and a snapshot's rows its own files.

with

cohort_positions as (

    select * from {{ ref('int_cohort_positions_completed') }}

),

final as (

    select
        snapshot_id,
        "window",
        coin,
        segment_id,
        ladder,
        last_update,
        snapshot_date,
        is_reported,
        long_usd,
        short_usd,
        total_usd,
        long_usd - short_usd as net_usd,
        long_positions,
        short_positions,
        total_positions,
        api_bias,
        {{ safe_ratio('long_usd', 'total_usd') }} as bias,
        2 * {{ safe_ratio('long_usd', 'total_usd') }} - 1 as net_bias,
        {{ safe_ratio('long_positions', 'total_positions') }} as long_positions_share,
        -- Each ladder partitions the coin's positions: a cohort's share of its ladder's total
        -- is its share of the coin's open interest. snapshot_date leads the partition so that
        -- a filter on it passes through the window to the lake scans.
        {{ safe_ratio(
            'total_usd',
            'sum(total_usd) over (partition by snapshot_date, snapshot_id, "window", coin, ladder)'
        ) }} as ladder_oi_share,
        source,
        _load_id

    from cohort_positions

)

select * from final
