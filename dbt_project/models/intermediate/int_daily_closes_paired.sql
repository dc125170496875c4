-- Each day's close beside the close of the calendar day before it, if that day has one.
-- A missing previous day (a gap in the history, or the first day) is kept as a missing
-- pair, never replaced by an older day: day-over-day changes span exactly one day.

with

daily_closes as (

    select * from {{ ref('int_daily_closes') }}

),

paired as (

    select
        current_day.snapshot_date,
        current_day."window",
        current_day.close_snapshot_id,
        current_day.close_at,
        current_day.close_source,
        current_day.snapshot_count,
        current_day.snapshot_date - 1 as previous_date,
        previous_day.close_snapshot_id as previous_close_snapshot_id,
        previous_day.close_at as previous_close_at,
        previous_day.close_source as previous_close_source,
        previous_day.snapshot_date is not null as has_previous_day,
        greatest(current_day._max_load_id, previous_day._max_load_id) as _max_load_id

    from daily_closes as current_day

    left join daily_closes as previous_day
        on
            current_day."window" = previous_day."window"
            and current_day.snapshot_date - 1 = previous_day.snapshot_date

)

select * from paired
