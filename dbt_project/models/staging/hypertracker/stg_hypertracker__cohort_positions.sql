-- Live heatmap rows, plus backfilled rows of the states no live snapshot holds (the live
-- heatmap wins: it is the vendor's own view; stg_hypertracker__backfill_states matches them
-- by time). `source` says where each row came from.

with

source as (

    select * from {{ source('hypertracker', 'heatmap_cohorts') }}

),

backfill as (

    select * from {{ source('hypertracker', 'backfill_cohorts') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

backfill_kept as (

    select
        snapshot_id,
        "window"

    from {{ ref('stg_hypertracker__backfill_states') }}

    where live_snapshot_id is null

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source."window" as varchar) as "window",
        cast(source.coin as varchar) as coin,
        cast(source.segment_id as smallint) as segment_id,
        cast(source.last_update as timestamp) as last_update,
        -- The lake's partition column: a filter on snapshot_date skips other days' files.
        cast(source.date as date) as snapshot_date,
        cast(source.total_long_value as double) as long_usd,
        cast(source.total_short_value as double) as short_usd,
        cast(source.total_value as double) as total_usd,
        cast(source.count_long as bigint) as long_positions,
        cast(source.count_short as bigint) as short_positions,
        cast(source.count as bigint) as total_positions,
        cast(source.bias as double) as api_bias,
        cast(source.is_known_segment as boolean) as is_known_cohort,
        'heatmap' as source,  -- noqa: RF04
        cast(loads.load_id as bigint) as _load_id

    from source

    inner join loads
        on source.snapshot_id = loads.snapshot_id

),

backfill_renamed as (

    select
        cast(backfill.snapshot_id as varchar) as snapshot_id,
        cast(backfill."window" as varchar) as "window",
        cast(backfill.coin as varchar) as coin,
        cast(backfill.segment_id as smallint) as segment_id,
        cast(backfill.last_update as timestamp) as last_update,
        cast(backfill.date as date) as snapshot_date,
        cast(backfill.total_long_value as double) as long_usd,
        cast(backfill.total_short_value as double) as short_usd,
        cast(backfill.total_value as double) as total_usd,
        cast(backfill.count_long as bigint) as long_positions,
        cast(backfill.count_short as bigint) as short_positions,
        cast(backfill.count as bigint) as total_positions,
        cast(backfill.bias as double) as api_bias,
        cast(backfill.is_known_segment as boolean) as is_known_cohort,
        cast(backfill.source as varchar) as source,  -- noqa: RF04
        cast(loads.load_id as bigint) as _load_id

    from backfill

    inner join loads
        on backfill.snapshot_id = loads.snapshot_id

    inner join backfill_kept
        on
            backfill.snapshot_id = backfill_kept.snapshot_id
            and backfill."window" = backfill_kept."window"

)

select * from renamed

union all

select * from backfill_renamed
