{#
    A filter that keeps the newest loaded snapshot only, for a model over the snapshot facts.

    When the model runs, the newest snapshot's id and day are read from the load ledger
    (`loads`, a ref to stg_hypertracker__loads) and inlined as literals, so that the lake
    scans read that snapshot's files alone; a subquery in their place makes DuckDB read the
    whole day. In a unit test the ledger is a fixture that no query can read beforehand (and
    in a lint there is no ledger), so the filter is the same condition as a subquery over it.
#}
{% macro newest_snapshot_filter(loads) -%}
    {%- set ledger = adapter.get_relation(
        database=target.database, schema=loads.schema, identifier=loads.identifier
    ) if execute and this is not none else none -%}
    {%- if ledger is not none -%}
        {%- set rows = run_query(
            "select snapshot_id, cast(snapshot_date as varchar) from " ~ loads
            ~ " order by snapshot_id desc limit 1"
        ).rows -%}
        {%- if rows | length == 0 -%}
            {{ return('false') }}
        {%- endif -%}
        {{ return(
            "snapshot_date = date '" ~ rows[0][1] ~ "' and snapshot_id = '" ~ rows[0][0] ~ "'"
        ) }}
    {%- endif -%}
    {{ return('snapshot_id = (select max(snapshot_id) from ' ~ loads ~ ')') }}
{%- endmacro %}
