with

source as (

    select * from {{ source('hypertracker', 'loads') }}

),

renamed as (

    select
        cast(snapshot_id as varchar) as snapshot_id,
        cast(snapshot_date as date) as snapshot_date,
        cast(load_id as bigint) as _load_id,
        cast(loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
