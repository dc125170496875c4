{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view over the lake, like the other snapshot-grain facts: the market captured with each
-- snapshot beside the size ladder's notional. A filter on snapshot_date (or on snapshot_date
-- and snapshot_id) reaches every lake scan.

with

snapshot_coins as (

    select * from {{ ref('int_snapshot_coins') }}

),

market_contexts as (

    select * from {{ ref('stg_hyperliquid__market_contexts') }}

),

market_fetches as (

    select * from {{ ref('stg_hyperliquid__market_fetches') }}

),

size_cohorts as (

    select segment_id

    from {{ ref('cohort_ladder') }}

    where ladder = 'size'

),

-- The size ladder partitions the coin's wallets: its 8 cohorts' notional in window all is
-- the coin's open interest as HyperTracker values it (both sides), less the few positions
-- in no cohort. A cohort the API left out holds nothing, so summing what it listed is exact.
size_ladder as (

    select
        cohort_positions.snapshot_date,
        cohort_positions.snapshot_id,
        cohort_positions.coin,
        sum(cohort_positions.long_usd) as size_ladder_long_usd,
        sum(cohort_positions.short_usd) as size_ladder_short_usd

    from {{ ref('stg_hypertracker__cohort_positions') }} as cohort_positions

    inner join size_cohorts
        on cohort_positions.segment_id = size_cohorts.segment_id

    where cohort_positions."window" = 'all'

    group by cohort_positions.snapshot_date, cohort_positions.snapshot_id, cohort_positions.coin

),

-- Which coins the snapshot's window all listed (the ladder is zero there, not unknown).
window_all_coins as (

    select
        snapshot_date,
        snapshot_id,
        coin

    from {{ ref('stg_hypertracker__coin_positions') }}

    where "window" = 'all'

),

coins as (

    select
        snapshot_coins.*,
        -- HIP-3 coins carry their dex as a prefix (xyz:GOLD); the others are the main dex's.
        case
            when contains(snapshot_coins.coin, ':')
                then split_part(snapshot_coins.coin, ':', 1)
            else 'main'
        end as coin_dex

    from snapshot_coins

),

joined as (

    select
        coins.snapshot_id,
        coins.last_update as snapshot_at,
        coins.snapshot_date,
        coins.coin,
        coins.source,
        coalesce(market_contexts.dex, coins.coin_dex) as dex,
        market_contexts.snapshot_id is not null as has_market,
        market_fetches.fetch_status as market_fetch_status,
        market_contexts.mark_price,
        market_contexts.oracle_price,
        market_contexts.mid_price,
        market_contexts.open_interest_coins,
        market_contexts.open_interest_coins * market_contexts.mark_price as open_interest_usd,
        market_contexts.funding_rate_hourly,
        market_contexts.premium,
        market_contexts.day_notional_volume_usd,
        market_contexts.market_fetched_at,
        epoch(market_contexts.market_fetched_at - coins.last_update) as market_lag_seconds,
        case
            when window_all_coins.coin is not null
                then coalesce(size_ladder.size_ladder_long_usd, 0)
        end as size_ladder_long_usd,
        case
            when window_all_coins.coin is not null
                then coalesce(size_ladder.size_ladder_short_usd, 0)
        end as size_ladder_short_usd,
        coins._load_id

    from coins

    -- Matching on snapshot_date too lets a filter on the coins' day reach every lake scan.
    left join market_contexts
        on
            coins.snapshot_date = market_contexts.snapshot_date
            and coins.snapshot_id = market_contexts.snapshot_id
            and coins.coin = market_contexts.coin

    left join market_fetches
        on
            coins.snapshot_date = market_fetches.snapshot_date
            and coins.snapshot_id = market_fetches.snapshot_id
            and coalesce(market_contexts.dex, coins.coin_dex) = market_fetches.dex

    left join window_all_coins
        on
            coins.snapshot_date = window_all_coins.snapshot_date
            and coins.snapshot_id = window_all_coins.snapshot_id
            and coins.coin = window_all_coins.coin

    left join size_ladder
        on
            coins.snapshot_date = size_ladder.snapshot_date
            and coins.snapshot_id = size_ladder.snapshot_id
            and coins.coin = size_ladder.coin

),

final as (

    select
        snapshot_id,
        snapshot_at,
        snapshot_date,
        coin,
        source,
        dex,
        has_market,
        market_fetch_status,
        mark_price,
        oracle_price,
        mid_price,
        open_interest_coins,
        open_interest_usd,
        funding_rate_hourly,
        premium,
        day_notional_volume_usd,
        market_fetched_at,
        market_lag_seconds,
        size_ladder_long_usd,
        size_ladder_short_usd,
        -- One side of the ladder's notional (long + short counts every position twice, open
        -- interest once) over open interest valued at mark.
        {{ safe_ratio(
            '(size_ladder_long_usd + size_ladder_short_usd) / 2', 'open_interest_usd'
        ) }} as coverage_ratio,
        _load_id

    from joined

)

select * from final
