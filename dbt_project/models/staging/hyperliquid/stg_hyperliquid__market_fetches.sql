with

source as (

    select * from {{ source('hyperliquid', 'market_fetches') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        -- The API names the main dex ''; analysts read 'main'.
        case
            when source.dex = '' then 'main' else cast(source.dex as varchar)
        end as dex,
        cast(source.last_update as timestamp) as last_update,
        -- The lake's partition column: a filter on snapshot_date skips other days' files.
        cast(source.date as date) as snapshot_date,
        cast(source.status as varchar) as fetch_status,
        cast(source.fetched_at as timestamp) as fetched_at,
        cast(source.url as varchar) as request_url,
        cast(source.http_status as smallint) as http_status,
        cast(source.body_bytes as bigint) as response_bytes,
        cast(source.body_sha256 as varchar) as response_sha256,
        cast(source.coin_count as integer) as coin_count,
        cast(source.error as varchar) as error_message,
        cast(loads.load_id as bigint) as _load_id

    from source

    -- A snapshot's market rows exist for the warehouse once the snapshot is loaded.
    inner join loads
        on source.snapshot_id = loads.snapshot_id

)

select * from renamed
