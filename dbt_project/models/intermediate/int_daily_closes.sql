-- A day (the UTC date of last_update) closes on its last snapshot, per window: the state the
-- day-level marts report, like a daily candle's close. The close may be a backfilled state
-- (close_source): the marts treat it as any other, and say where it came from.

with

snapshots as (

    select * from {{ ref('stg_hypertracker__snapshots') }}

),

daily_closes as (

    select
        snapshot_date,
        "window",
        max(snapshot_id) as close_snapshot_id,
        max(last_update) as close_at,
        arg_max(source, snapshot_id) as close_source,
        min(last_update) as first_snapshot_at,
        count(*) as snapshot_count,
        max(_load_id) as _max_load_id

    from snapshots

    group by snapshot_date, "window"

)

select * from daily_closes
