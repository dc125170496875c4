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
        'heatmap' as source,  -- noqa: RF04
        cast(loads.load_id as bigint) as _load_id

    from source

    -- A snapshot exists for the warehouse once it is loaded.
    inner join loads
        on source.snapshot_id = loads.snapshot_id

),

-- Backfilled states no live snapshot holds (stg_hypertracker__backfill_states): no request
-- of their own, so the fetch columns are NULL; the day-level marts close their days on them.
backfill_kept as (

    select
        snapshot_id,
        "window",
        last_update,
        snapshot_date,
        cast(null as timestamp) as next_update_expected_at,
        cast(null as timestamp) as fetched_at,
        cast(null as varchar) as request_url,
        cast(null as smallint) as http_status,
        cast(null as bigint) as response_bytes,
        cast(null as varchar) as response_sha256,
        coin_count,
        source,
        _load_id

    from {{ ref('stg_hypertracker__backfill_states') }}

    where live_snapshot_id is null

)

select * from renamed

union all

select * from backfill_kept
