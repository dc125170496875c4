{#
    Every row satisfies a SQL boolean expression (a row invariant). Rows where it is false
    or NULL fail: write `x is null or ...` when NULL is allowed.
#}
{% test expression_is_true(model, expression) %}

    select *

    from {{ model }}

    where not coalesce(({{ expression }}), false)

{% endtest %}
