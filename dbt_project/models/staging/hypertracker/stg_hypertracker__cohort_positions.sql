with

source as (

    select * from {{ source('hypertracker', 'heatmap_cohorts') }}

),

-- Dedupe without a window function over the big table: keep the rows written by the newest
-- load of their (snapshot, window), read from the small snapshots table. A filter on _load_id
-- downstream (the incremental facts) then reaches the raw scan through this join, and
-- DuckDB's zone maps skip the row groups of older loads. Replacing a snapshot as a whole
-- (not row by row) is also what absence-means-zero requires.
snapshot_loads as (

    select
        snapshot_id,
        "window",
        max(_load_id) as _load_id

    from {{ source('hypertracker', 'snapshots') }}

    group by snapshot_id, "window"

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source."window" as varchar) as "window",
        cast(source.coin as varchar) as coin,
        cast(source.segment_id as smallint) as segment_id,
        cast(source.last_update as timestamp) as last_update,
        cast(source.last_update as date) as snapshot_date,
        cast(source.total_long_value as double) as long_usd,
        cast(source.total_short_value as double) as short_usd,
        cast(source.total_value as double) as total_usd,
        cast(source.count_long as bigint) as long_positions,
        cast(source.count_short as bigint) as short_positions,
        cast(source.count as bigint) as total_positions,
        cast(source.bias as double) as api_bias,
        cast(source.is_known_segment as boolean) as is_known_cohort,
        cast(source._load_id as bigint) as _load_id

    from source

    inner join snapshot_loads
        on
            source.snapshot_id = snapshot_loads.snapshot_id
            and source."window" = snapshot_loads."window"
            and source._load_id = snapshot_loads._load_id

)

select * from renamed
