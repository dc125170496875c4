-- Every coin of every loaded snapshot, once: the coins the heatmap listed in any window (a
-- coin in a short window is in window all too, unless all was not fetched).

with

coin_positions as (

    select * from {{ ref('stg_hypertracker__coin_positions') }}

),

snapshot_coins as (

    select
        snapshot_id,
        coin,
        last_update,
        snapshot_date,
        -- One source per snapshot (staging keeps a state live or backfilled, never both).
        source,
        _load_id

    from coin_positions

    -- snapshot_date leads the grouping, so that a filter on it reaches the lake scan.
    group by snapshot_date, snapshot_id, coin, last_update, source, _load_id

)

select * from snapshot_coins
