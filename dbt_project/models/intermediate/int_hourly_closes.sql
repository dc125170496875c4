-- Hyperliquid's hourly closes, one row per coin and hour: the price each hourly candle's
-- close holds for, at the end of its hour. The one place that says when a close is known,
-- for the marts that price an instant from the candles.

with

candles as (

    select * from {{ ref('stg_hyperliquid__candles') }}

    where candle_interval = '1h'

),

closes as (

    select
        coin,
        -- A candle's close is the last trade of its hour: the price at open_time + 1 hour.
        open_time + interval 1 hour as closed_at,
        close_price,
        -- Fetched while still open, the close is the last trade so far, not final.
        is_closed

    from candles

)

select * from closes
