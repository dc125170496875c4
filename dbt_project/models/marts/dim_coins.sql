-- Every coin ever seen, from the compact daily table (one row per coin, window and day)
-- rather than the snapshot fact, so a full rebuild stays cheap as history grows.

with

coin_days as (

    select * from {{ ref('coin_bias_daily') }}

),

snapshot_times as (

    select distinct last_update

    from {{ ref('stg_hypertracker__snapshots') }}

),

-- The snapshot after each snapshot: a coin last seen at t was first missing at next(t).
next_snapshots as (

    select
        last_update,
        lead(last_update) over (order by last_update) as next_snapshot_at

    from snapshot_times

),

coin_sightings as (

    select
        coin,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        count(distinct snapshot_date) as days_seen

    from coin_days

    group by coin

),

final as (

    select
        coin_sightings.coin,
        case
            when contains(coin_sightings.coin, ':')
                then split_part(coin_sightings.coin, ':', 1)
        end as builder_dex,
        case
            when contains(coin_sightings.coin, ':')
                then substr(coin_sightings.coin, strpos(coin_sightings.coin, ':') + 1)
            else coin_sightings.coin
        end as asset_name,
        coin_sightings.first_seen_at,
        coin_sightings.last_seen_at,
        coin_sightings.days_seen,
        next_snapshots.next_snapshot_at is null as is_listed,
        next_snapshots.next_snapshot_at as delisted_at

    from coin_sightings

    inner join next_snapshots
        on coin_sightings.last_seen_at = next_snapshots.last_update

)

select * from final
