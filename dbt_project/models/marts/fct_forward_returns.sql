{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view: the candles keep arriving after a snapshot (the 24h return is known a day later),
-- so the returns are computed when read, never frozen at the snapshot's build.

{#- The horizons, in hours; 0 is the entry. -#}
{%- set horizons = [0, 1, 4, 24] %}

with

snapshot_coins as (

    select * from {{ ref('int_snapshot_coins') }}

),

closes as (

    select * from {{ ref('int_hourly_closes') }}

),

-- How far each coin's price history reaches: its newest closed candle. Beyond it nothing is
-- known yet (the price fetch asks up to the newest snapshot, so a later fetch time proves
-- nothing about the hours after that snapshot).
known as (

    select
        coin,
        max(closed_at) as known_through

    from closes

    where is_closed

    group by coin

),

horizons as (

    select unnest({{ horizons }}) as horizon_hours

),

-- The entry is the first hourly close at or after the snapshot: the top of the next hour (the
-- snapshot's own instant when it falls on the hour), so that no return holds a move made
-- before the state was known; horizon h is h hours after the entry.
entries as (

    select
        *,
        case
            when last_update = date_trunc('hour', last_update) then last_update
            else date_trunc('hour', last_update) + interval 1 hour
        end as entry_at

    from snapshot_coins

),

targets as (

    select
        entries.snapshot_date,
        entries.snapshot_id,
        entries.coin,
        horizons.horizon_hours,
        entries.entry_at + to_hours(horizons.horizon_hours) as target_at

    from entries

    cross join horizons

),

-- The newest candle closed at or before each target (an hour without trades has no candle:
-- the last close stands), if the history reaches the target and that candle was fetched
-- closed: otherwise the price there is not known (yet), and it is NULL.
target_prices as (

    select
        targets.snapshot_date,
        targets.snapshot_id,
        targets.coin,
        targets.horizon_hours,
        case
            when closes.is_closed and known.known_through >= targets.target_at
                then closes.close_price
        end as close_price,
        case
            when closes.is_closed and known.known_through >= targets.target_at
                then closes.closed_at
        end as closed_at

    from targets

    asof left join closes
        on
            targets.coin = closes.coin
            and targets.target_at >= closes.closed_at

    left join known
        on targets.coin = known.coin

),

priced as (

    select
        {% for hours in horizons %}
            max(
                case when horizon_hours = {{ hours }} then close_price end
            ) as close_{{ hours }}h,
        {% endfor %}
        max(case when horizon_hours = 0 then closed_at end) as entry_candle_closed_at,
        snapshot_date,
        snapshot_id,
        coin

    from target_prices

    group by snapshot_date, snapshot_id, coin

),

final as (

    select
        entries.snapshot_id,
        entries.last_update as snapshot_at,
        entries.snapshot_date,
        entries.coin,
        entries.source,
        entries.entry_at,
        priced.close_0h as entry_price,
        priced.entry_candle_closed_at,
        {% for hours in horizons[1:] %}
            {{ safe_ratio('priced.close_' ~ hours ~ 'h', 'priced.close_0h') }}
            - 1 as return_{{ hours }}h,
        {% endfor %}
        entries._load_id

    from entries

    -- Matching on snapshot_date too lets a filter on the day reach the lake scans.
    left join priced
        on
            entries.snapshot_date = priced.snapshot_date
            and entries.snapshot_id = priced.snapshot_id
            and entries.coin = priced.coin

)

select * from final
