-- Hourly candles, one row per coin and hour: a candle fetched more than once (the open one,
-- or an overlap between two incremental fetches) keeps the row fetched last.

with

source as (

    select * from {{ source('hyperliquid', 'candles') }}

),

renamed as (

    select
        cast(coin as varchar) as coin,
        cast(candle_interval as varchar) as candle_interval,
        cast(open_time as timestamp) as open_time,
        cast(close_time as timestamp) as close_time,
        -- The lake's partition column (the UTC date of open_time).
        cast(date as date) as candle_date,
        cast(open_px as double) as open_price,
        cast(high_px as double) as high_price,
        cast(low_px as double) as low_price,
        cast(close_px as double) as close_price,
        cast(volume as double) as volume_coins,
        cast(trades as bigint) as trade_count,
        cast(fetched_at as timestamp) as fetched_at

    from source

),

newest_fetch as (

    select
        *,
        -- Fetched after it closed: its close is final (an open candle's close is the last
        -- trade so far).
        fetched_at > close_time as is_closed

    from renamed

    -- candle_date leads the partition (it follows from open_time), so that a filter on it
    -- reaches the lake scan as a partition filter.
    qualify row_number() over (
        partition by candle_date, coin, candle_interval, open_time
        order by fetched_at desc
    ) = 1

)

select * from newest_fetch
