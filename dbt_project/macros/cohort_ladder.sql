{#
    The 16 cohorts as (segment_id, slug) in display order, for models that need one column
    per cohort (the heatmap board). Column names must be known when the SQL is compiled, so
    they cannot come from the seed at run time; the singular test
    tests/assert_board_cohorts_match_seed.sql fails if this list and seeds/cohort_ladder.csv
    ever disagree.
#}
{% macro board_cohorts() -%}
    {{ return([
        (16, 'shrimp'), (1, 'fish'), (2, 'dolphin'), (3, 'apex_predator'),
        (4, 'small_whale'), (5, 'whale'), (6, 'tidal_whale'), (7, 'leviathan'),
        (8, 'money_printer'), (9, 'smart_money'), (10, 'grinder'), (11, 'humble_earner'),
        (12, 'exit_liquidity'), (13, 'semi_rekt'), (14, 'full_rekt'), (15, 'giga_rekt'),
    ]) }}
{%- endmacro %}
