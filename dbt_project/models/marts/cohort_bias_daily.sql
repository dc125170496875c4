{{ config(materialized='daily_parquet', meta={'publish': 'view'}) }}

-- depends_on: {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (daily_rebuild_days reads them)

-- By day: a build rebuilds only the days that received a snapshot since the last build
-- (macros/daily_parquet.sql), so its cost is a day's snapshots, not the history.

{#- The days that received a snapshot since the last build (none: every day). -#}
{%- set rebuild_days = daily_rebuild_days() %}

with

daily_closes as (

    select * from {{ ref('int_daily_closes') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

cohort_snapshots as (

    select * from {{ ref('fct_cohort_snapshots') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

intraday as (

    select
        snapshot_date,
        "window",
        coin,
        segment_id,
        ladder,
        count(*) as present_snapshot_count,
        min(bias) as min_bias,
        max(bias) as max_bias,
        avg(bias) as mean_bias

    from cohort_snapshots

    group by snapshot_date, "window", coin, segment_id, ladder

),

closing as (

    select cohort_snapshots.*

    from cohort_snapshots

    inner join daily_closes
        on
            cohort_snapshots.snapshot_id = daily_closes.close_snapshot_id
            and cohort_snapshots."window" = daily_closes."window"

),

final as (

    select
        intraday.snapshot_date,
        intraday."window",
        intraday.coin,
        intraday.segment_id,
        intraday.ladder,
        daily_closes.close_snapshot_id,
        daily_closes.close_at,
        daily_closes.close_source,
        daily_closes.snapshot_count,
        intraday.present_snapshot_count,
        closing.snapshot_id is not null as is_present_at_close,
        coalesce(closing.is_reported, false) as is_reported_at_close,
        coalesce(closing.long_usd, 0) as long_usd,
        coalesce(closing.short_usd, 0) as short_usd,
        coalesce(closing.total_usd, 0) as total_usd,
        coalesce(closing.net_usd, 0) as net_usd,
        coalesce(closing.long_positions, 0) as long_positions,
        coalesce(closing.short_positions, 0) as short_positions,
        coalesce(closing.total_positions, 0) as total_positions,
        closing.bias,
        closing.net_bias,
        closing.long_positions_share,
        closing.ladder_oi_share,
        intraday.min_bias,
        intraday.max_bias,
        intraday.mean_bias,
        daily_closes._max_load_id

    from intraday

    inner join daily_closes
        on
            intraday.snapshot_date = daily_closes.snapshot_date
            and intraday."window" = daily_closes."window"

    left join closing
        on
            intraday.snapshot_date = closing.snapshot_date
            and intraday."window" = closing."window"
            and intraday.coin = closing.coin
            and intraday.segment_id = closing.segment_id

)

select * from final
