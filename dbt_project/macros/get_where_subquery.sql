{#
    Test scope for the big, ever-growing tables.

    dbt wraps every generic test's `model` in get_where_subquery(), which applies the test's
    `where` config. This override adds two forms, so that a test costs the size of one load
    rather than of the whole history, and still sees every row once, as it arrives:

    - `where: "newest_load"`: only the rows of the newest load that brought snapshots
      (`_load_id` = the highest _load_id in raw.snapshots, a small table). Cheap on views too:
      the id is inlined as a literal, which reaches the raw scans behind them.
    - `where: "newest:<column>"`: only the rows whose <column> equals its maximum in the
      relation itself (for tables, e.g. the daily marts' _max_load_id: the rows the newest
      run rebuilt).

    `dbt build --vars '{test_full_history: true}'` drops both limits and tests every row.
    Any other `where` value behaves exactly as in dbt's own macro.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' -%}
    {%- if where == 'newest_load' or where.startswith('newest:') -%}
        {%- if var('test_full_history', false) -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {#- The newest id is read first and inlined as a literal, so that the filter reaches
            the scans behind a view whatever join order DuckDB picks. -#}
        {%- if where == 'newest_load' -%}
            {%- set column = '_load_id' -%}
            {%- set newest_query -%}
                select max(_load_id) from {{ source('hypertracker', 'snapshots') }}
            {%- endset -%}
        {%- else -%}
            {%- set column = where[7:] | trim -%}
            {%- set newest_query -%}
                select max({{ column }}) from {{ relation }}
            {%- endset -%}
        {%- endif -%}
        {%- set newest = run_query(newest_query).columns[0].values()[0] if execute else none -%}
        {%- set condition -%}
            {{ column }} = {{ newest if newest is not none else 'null' }}
        {%- endset -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ condition }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- elif where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
