{# Shares and changes, written once so every mart divides the same way. #}

{# numerator / denominator, NULL when the denominator is 0 (or NULL): no share of nothing. #}
{% macro safe_ratio(numerator, denominator) -%}
    ({{ numerator }}) / nullif({{ denominator }}, 0)
{%- endmacro %}

{# Percent change from previous to current, NULL when previous is 0 or NULL. #}
{% macro pct_change(current, previous) -%}
    100.0 * (({{ current }}) - ({{ previous }})) / nullif({{ previous }}, 0)
{%- endmacro %}
