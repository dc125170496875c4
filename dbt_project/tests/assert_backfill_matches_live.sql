-- Backfilled states a live snapshot also holds (stg_hypertracker__backfill_states), compared
-- cohort by cohort with the live rows: counts equal, USD values within 1e-9 relative, bias
-- equal to 3 decimals. Every row is a difference, or a cohort on one side only. A warning,
-- not an error: the history mapping is the vendor's claim (history-endpoints.md), and the
-- live heatmap wins in the marts whatever this finds.
{{ config(severity='warn') }}

with

matched as (

    select
        snapshot_id,
        "window",
        live_snapshot_id

    from {{ ref('stg_hypertracker__backfill_states') }}

    where live_snapshot_id is not null

),

backfill as (

    select
        matched.live_snapshot_id,
        backfill_cohorts."window",
        backfill_cohorts.coin,
        backfill_cohorts.segment_id,
        backfill_cohorts.count,
        backfill_cohorts.count_long,
        backfill_cohorts.total_value,
        backfill_cohorts.total_long_value,
        backfill_cohorts.bias

    from {{ source('hypertracker', 'backfill_cohorts') }} as backfill_cohorts

    inner join matched
        on
            backfill_cohorts.snapshot_id = matched.snapshot_id
            and backfill_cohorts."window" = matched."window"

),

live as (

    select
        heatmap_cohorts.snapshot_id,
        heatmap_cohorts."window",
        heatmap_cohorts.coin,
        heatmap_cohorts.segment_id,
        heatmap_cohorts.count,
        heatmap_cohorts.count_long,
        heatmap_cohorts.total_value,
        heatmap_cohorts.total_long_value,
        heatmap_cohorts.bias

    from {{ source('hypertracker', 'heatmap_cohorts') }} as heatmap_cohorts

    -- Only the coins the backfill holds: a backfill of a few coins is not a difference.
    where exists (
        select 1
        from backfill
        where
            backfill.live_snapshot_id = heatmap_cohorts.snapshot_id
            and backfill."window" = heatmap_cohorts."window"
            and backfill.coin = heatmap_cohorts.coin
    )

),

compared as (

    select
        coalesce(live.snapshot_id, backfill.live_snapshot_id) as live_snapshot_id,
        coalesce(live."window", backfill."window") as "window",
        coalesce(live.coin, backfill.coin) as coin,
        coalesce(live.segment_id, backfill.segment_id) as segment_id,
        live.count as live_count,
        backfill.count as backfill_count,
        live.total_value as live_total_value,
        backfill.total_value as backfill_total_value

    from live

    full outer join backfill
        on
            live.snapshot_id = backfill.live_snapshot_id
            and live."window" = backfill."window"
            and live.coin = backfill.coin
            and live.segment_id = backfill.segment_id

    where
        live.snapshot_id is null
        or backfill.live_snapshot_id is null
        or live.count != backfill.count
        or live.count_long != backfill.count_long
        or abs(live.total_value - backfill.total_value)
        > 1e-9 * greatest(abs(live.total_value), 1)
        or abs(live.total_long_value - backfill.total_long_value)
        > 1e-9 * greatest(abs(live.total_long_value), 1)
        or round(live.bias, 3) != round(backfill.bias, 3)

)

select * from compared
