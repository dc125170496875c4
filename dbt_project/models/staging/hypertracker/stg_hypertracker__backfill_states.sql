-- Backfilled states (flows/backfill/) and the live snapshot of the same state, if any: the
-- nearest live last_update within 5 minutes. Backfilled times are a refresh's latest row
-- time and fall a little before the live lastUpdate, so ids never match: match by time.
-- Where a live snapshot matches, the live one wins in the union models.

with

source as (

    select * from {{ source('hypertracker', 'backfill_states') }}

),

loads as (

    select * from {{ source('hypertracker', 'loads') }}

),

live_snapshots as (

    select distinct
        snapshots.snapshot_id,
        snapshots.last_update

    from {{ source('hypertracker', 'snapshots') }} as snapshots

    inner join loads
        on snapshots.snapshot_id = loads.snapshot_id

),

renamed as (

    select
        cast(source.snapshot_id as varchar) as snapshot_id,
        cast(source."window" as varchar) as "window",
        cast(source.last_update as timestamp) as last_update,
        cast(source.date as date) as snapshot_date,
        cast(source.first_row_at as timestamp) as first_row_at,
        cast(source.source as varchar) as source,  -- noqa: RF04
        cast(source.coin_count as integer) as coin_count,
        cast(source.cohort_rows as integer) as cohort_rows,
        cast(source.unfit_rows as integer) as unfit_rows,
        cast(loads.load_id as bigint) as _load_id

    from source

    inner join loads
        on source.snapshot_id = loads.snapshot_id

),

matched as (

    select
        renamed.*,
        live_snapshots.snapshot_id as live_snapshot_id

    from renamed

    left join live_snapshots
        on abs(epoch_ms(live_snapshots.last_update) - epoch_ms(renamed.last_update)) <= 300000

    qualify row_number() over (
        partition by renamed.snapshot_id, renamed."window"
        order by abs(epoch_ms(live_snapshots.last_update) - epoch_ms(renamed.last_update)) asc
    ) = 1

)

select * from matched
