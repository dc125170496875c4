with

source as (

    select * from {{ source('hyperliquid', 'market_contexts') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source.coin as varchar) as coin,
        -- The API names the main dex ''; analysts read 'main'.
        case
            when source.dex = '' then 'main' else cast(source.dex as varchar)
        end as dex,
        cast(source.last_update as timestamp) as last_update,
        -- The lake's partition column: a filter on snapshot_date skips other days' files.
        cast(source.date as date) as snapshot_date,
        cast(source.fetched_at as timestamp) as market_fetched_at,
        cast(source.mark_px as double) as mark_price,
        cast(source.oracle_px as double) as oracle_price,
        cast(source.mid_px as double) as mid_price,
        cast(source.open_interest as double) as open_interest_coins,
        cast(source.funding as double) as funding_rate_hourly,
        cast(source.premium as double) as premium,
        cast(source.day_ntl_vlm as double) as day_notional_volume_usd,
        cast(source.prev_day_px as double) as previous_day_price,
        cast(source.sz_decimals as smallint) as size_decimals,
        cast(source.max_leverage as smallint) as max_leverage,
        cast(source.is_delisted as boolean) as is_delisted,
        cast(loads.load_id as bigint) as _load_id

    from source

    -- A snapshot's market rows exist for the warehouse once the snapshot is loaded.
    inner join loads
        on source.snapshot_id = loads.snapshot_id

)

select * from renamed
