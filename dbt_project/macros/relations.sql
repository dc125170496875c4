{#
    Relations render without their database ("staging"."stg_x", not "build"."staging"."stg_x").
    Publishing copies the views into analytics.duckdb, where the same names must resolve in
    that file: DuckDB binds the names in a view within the database that holds the view.
#}
{% macro ref() -%}
    {%- do return(builtins.ref(*varargs, **kwargs).include(database=False)) -%}
{%- endmacro %}

{% macro source(source_name, table_name) -%}
    {%- do return(builtins.source(source_name, table_name).include(database=False)) -%}
{%- endmacro %}
