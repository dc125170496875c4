{{ config(materialized='view', meta={'publish': 'view'}) }}
-- A view over the lake: nothing is stored twice. A filter on snapshot_date reaches the lake
-- scan as a partition filter, so a day's rows cost a day's files.

with

coin_positions as (

    select * from {{ ref('stg_hypertracker__coin_positions') }}

),

final as (

    select
        snapshot_id,
        "window",
        coin,
        last_update,
        snapshot_date,
        long_usd,
        short_usd,
        total_usd,
        long_usd - short_usd as net_usd,
        long_positions,
        short_positions,
        total_positions,
        {{ safe_ratio('long_usd', 'total_usd') }} as bias,
        {{ safe_ratio('long_positions', 'total_positions') }} as long_positions_share,
        reported_cohort_count,
        source,
        totals_derived,
        _load_id

    from coin_positions

)

select * from final
