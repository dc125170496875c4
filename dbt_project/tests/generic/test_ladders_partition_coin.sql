{#
    The two cohort ladders partition the same positions: per snapshot, window and coin the
    size ladder (16, 1-7) and the PnL ladder (8-15) sum to the same USD value and position
    count, and neither sum exceeds the coin's total (a few positions belong to no cohort).
    Applied to a cohort-grain model; coin_model holds the coin totals. Severity warn: a
    fetch that straddles a refresh can break it a little.
#}
{% test ladders_partition_coin(model, coin_model) %}

    with

    ladder_sums as (

        select
            snapshot_id,
            "window",
            coin,
            sum(case when ladder = 'size' then total_usd else 0 end) as size_usd,
            sum(case when ladder = 'pnl' then total_usd else 0 end) as pnl_usd,
            sum(case when ladder = 'size' then total_positions else 0 end) as size_positions,
            sum(case when ladder = 'pnl' then total_positions else 0 end) as pnl_positions

        from {{ model }}

        group by snapshot_id, "window", coin

    ),

    compared as (

        select
            ladder_sums.*,
            coins.total_usd as coin_usd,
            coins.total_positions as coin_positions

        from ladder_sums

        inner join {{ coin_model }} as coins
            on
                ladder_sums.snapshot_id = coins.snapshot_id
                and ladder_sums."window" = coins."window"
                and ladder_sums.coin = coins.coin

    )

    select *

    from compared

    where
        abs(size_usd - pnl_usd) > 0.01 + 1e-9 * abs(coin_usd)
        or size_positions != pnl_positions
        or size_usd > coin_usd + 0.01 + 1e-9 * abs(coin_usd)
        or size_positions > coin_positions

{% endtest %}
