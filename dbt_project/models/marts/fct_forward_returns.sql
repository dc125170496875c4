{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view: the candles keep arriving after a snapshot (the 24h return is known a day later),
-- so the returns are computed when read, never frozen at the snapshot's build.

{#- The horizons, in hours; 0 is the price at the snapshot. -#}
{%- set horizons = [0, 1, 4, 24] %}

with

snapshot_coins as (

    select * from {{ ref('int_snapshot_coins') }}

),

-- Only closed candles (fetched after their hour ended): an open candle's close is partial.
closes as (

    select
        coin,
        open_time,
        close_price

    from {{ ref('stg_hyperliquid__candles') }}

    where candle_interval = '1h' and is_closed

),

-- The price is taken at the top of the snapshot's hour: the close of the newest hourly
-- candle that had closed by snapshot_at. Horizon h reads the candle that closed h hours later.
horizons as (

    select unnest({{ horizons }}) as horizon_hours

),

targets as (

    select
        snapshot_coins.snapshot_date,
        snapshot_coins.snapshot_id,
        snapshot_coins.coin,
        horizons.horizon_hours,
        date_trunc('hour', snapshot_coins.last_update)
        + to_hours(horizons.horizon_hours - 1) as candle_open_time

    from snapshot_coins

    cross join horizons

),

priced as (

    select
        {% for hours in horizons %}
            max(
                case when targets.horizon_hours = {{ hours }} then closes.close_price end
            ) as close_{{ hours }}h,
        {% endfor %}
        targets.snapshot_date,
        targets.snapshot_id,
        targets.coin

    from targets

    inner join closes
        on
            targets.coin = closes.coin
            and targets.candle_open_time = closes.open_time

    group by targets.snapshot_date, targets.snapshot_id, targets.coin

),

final as (

    select
        snapshot_coins.snapshot_id,
        snapshot_coins.last_update as snapshot_at,
        snapshot_coins.snapshot_date,
        snapshot_coins.coin,
        date_trunc('hour', snapshot_coins.last_update) as price_at,
        priced.close_0h as price_at_snapshot,
        {% for hours in horizons[1:] %}
            {{ safe_ratio('priced.close_' ~ hours ~ 'h', 'priced.close_0h') }}
            - 1 as return_{{ hours }}h,
        {% endfor %}
        snapshot_coins._load_id

    from snapshot_coins

    -- Matching on snapshot_date too lets a filter on the day reach the lake scans.
    left join priced
        on
            snapshot_coins.snapshot_date = priced.snapshot_date
            and snapshot_coins.snapshot_id = priced.snapshot_id
            and snapshot_coins.coin = priced.coin

)

select * from final
