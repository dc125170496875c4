with

source as (

    select * from {{ source('hypertracker', 'snapshots') }}

),

renamed as (

    select
        cast(snapshot_id as varchar) as snapshot_id,
        cast("window" as varchar) as "window",
        cast(last_update as timestamp) as last_update,
        cast(last_update as date) as snapshot_date,
        cast(next_update as timestamp) as next_update_expected_at,
        cast(fetched_at as timestamp) as fetched_at,
        cast(url as varchar) as request_url,
        cast(http_status as smallint) as http_status,
        cast(body_bytes as bigint) as response_bytes,
        cast(body_sha256 as varchar) as response_sha256,
        cast(coin_count as integer) as coin_count,
        cast(_load_id as bigint) as _load_id

    from source

    -- A snapshot is loaded once; should it ever be loaded again, the newest load wins.
    -- This table is small (one row per snapshot and window), so a window function is cheap.
    qualify row_number() over (
        partition by snapshot_id, "window"
        order by _load_id desc
    ) = 1

)

select * from renamed
