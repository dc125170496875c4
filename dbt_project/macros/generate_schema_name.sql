{#
    Schemas are named exactly as configured (staging, intermediate, marts, seeds) instead of
    dbt's default <target_schema>_<custom_schema> (main_staging): the loader, the publisher and
    analysts address them by these names.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
