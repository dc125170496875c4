{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        meta={'publish': 'append'},
    )
}}

-- Append-only by load: each run adds the loads newer than the newest one here. The filter is
-- a literal on _load_id, so it reaches the raw table scan and zone maps skip the older loads
-- (macros/incremental_helpers.sql says why a literal).

with

coin_positions as (

    select * from {{ ref('stg_hypertracker__coin_positions') }}

    {% if is_incremental() %}
        where _load_id > {{ incremental_watermark('_load_id') }}
    {% endif %}

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
        _load_id

    from coin_positions

)

select * from final
