with

source as (

    select * from {{ source('hypertracker', 'segments') }}

),

renamed as (

    select distinct
        cast(fetched_at as timestamp) as fetched_at,
        cast(segment_id as smallint) as segment_id,
        cast(name as varchar) as cohort_name,
        cast(category as varchar) as api_category,
        cast(emoji as varchar) as emoji,
        cast(criteria_json as varchar) as criteria_json

    from source

)

select * from renamed
