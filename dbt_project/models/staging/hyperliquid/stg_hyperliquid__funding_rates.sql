-- Hourly funding, one row per coin and funding time: a row fetched more than once keeps the
-- row fetched last.

with

source as (

    select * from {{ source('hyperliquid', 'funding_rates') }}

),

renamed as (

    select
        cast(coin as varchar) as coin,
        cast(time as timestamp) as funding_at,
        -- The lake's partition column (the UTC date of funding_at).
        cast(date as date) as funding_date,
        cast(funding_rate as double) as funding_rate_hourly,
        cast(premium as double) as premium,
        cast(fetched_at as timestamp) as fetched_at

    from source

),

newest_fetch as (

    select * from renamed

    -- funding_date leads the partition (it follows from funding_at), so that a filter on it
    -- reaches the lake scan as a partition filter.
    qualify row_number() over (
        partition by funding_date, coin, funding_at
        order by fetched_at desc
    ) = 1

)

select * from newest_fetch
