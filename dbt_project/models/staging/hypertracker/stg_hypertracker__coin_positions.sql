with

source as (

    select * from {{ source('hypertracker', 'heatmap_coins') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source."window" as varchar) as "window",
        cast(source.coin as varchar) as coin,
        cast(source.last_update as timestamp) as last_update,
        -- The lake's partition column: a filter on snapshot_date skips other days' files.
        cast(source.date as date) as snapshot_date,
        cast(source.total_long_value as double) as long_usd,
        cast(source.total_short_value as double) as short_usd,
        cast(source.total_value as double) as total_usd,
        cast(source.count_long as bigint) as long_positions,
        cast(source.count_short as bigint) as short_positions,
        cast(source.count as bigint) as total_positions,
        cast(source.segment_count as smallint) as reported_cohort_count,
        cast(loads.load_id as bigint) as _load_id

    from source

    inner join loads
        on source.snapshot_id = loads.snapshot_id

)

select * from renamed
