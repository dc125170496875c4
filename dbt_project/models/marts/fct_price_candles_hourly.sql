{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view over the lake: the hourly candles (the newest fetch of each) beside the funding
-- settled at the end of the candle's hour, for charts of price against positioning.

with

candles as (

    select * from {{ ref('stg_hyperliquid__candles') }}

    where candle_interval = '1h'

),

-- Funding settles on the hour (a few milliseconds after it, in the API): the rate settled at
-- the end of a candle's hour is the one computed over that hour.
funding as (

    select
        coin,
        date_trunc('hour', funding_at) as settled_hour,
        funding_at,
        funding_rate_hourly,
        premium

    from {{ ref('stg_hyperliquid__funding_rates') }}

    qualify row_number() over (
        partition by coin, date_trunc('hour', funding_at) order by funding_at desc
    ) = 1

),

final as (

    select
        candles.coin,
        candles.open_time,
        candles.close_time,
        candles.candle_date,
        candles.open_price,
        candles.high_price,
        candles.low_price,
        candles.close_price,
        candles.volume_coins,
        candles.trade_count,
        candles.is_closed,
        candles.fetched_at,
        funding.funding_at,
        funding.funding_rate_hourly,
        funding.premium as funding_premium

    from candles

    left join funding
        on
            candles.coin = funding.coin
            and candles.open_time + interval 1 hour = funding.settled_hour

)

select * from final
