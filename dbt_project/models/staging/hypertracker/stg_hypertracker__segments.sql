with

source as (

    select * from {{ source('hypertracker', 'segments') }}

),

renamed as (

    select
        cast(fetched_at as timestamp) as fetched_at,
        cast(segment_id as smallint) as segment_id,
        cast(name as varchar) as cohort_name,
        cast(category as varchar) as api_category,
        cast(emoji as varchar) as emoji,
        cast(criteria_json as varchar) as criteria_json,
        cast(_load_id as bigint) as _load_id

    from source

    -- One row per cohort per /segments fetch; the newest load wins if a fetch was loaded twice.
    qualify row_number() over (
        partition by fetched_at, segment_id
        order by _load_id desc
    ) = 1

)

select * from renamed
