"""The pipeline's hook: alerts as a Prefect task, after the publish (flows/pipeline.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.alerts.deliver import AlertsOutcome, deliver_new_events
from flows.settings import Settings


@task(name="deliver alerts", persist_result=False, cache_policy=NO_CACHE)
def deliver_alerts(settings: Settings) -> AlertsOutcome:
    """New signal events to the configured channels; never fails the run."""
    return deliver_new_events(settings)
