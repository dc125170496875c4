with

source as (

    select * from {{ source('hypertracker', 'snapshots') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source."window" as varchar) as "window",
        cast(source.last_update as timestamp) as last_update,
        cast(source.date as date) as snapshot_date,
        cast(source.next_update as timestamp) as next_update_expected_at,
        cast(source.fetched_at as timestamp) as fetched_at,
        cast(source.url as varchar) as request_url,
        cast(source.http_status as smallint) as http_status,
        cast(source.body_bytes as bigint) as response_bytes,
        cast(source.body_sha256 as varchar) as response_sha256,
        cast(source.coin_count as integer) as coin_count,
        cast(loads.load_id as bigint) as _load_id

    from source

    -- A snapshot exists for the warehouse once it is loaded.
    inner join loads
        on source.snapshot_id = loads.snapshot_id

)

select * from renamed
