"""Alerts: new signal events (``marts.signal_events``) to the channels the user configured.

After each publish, :func:`deliver_new_events` reads the published ``analytics.duckdb`` and
sends every event the channel has not had yet:

* **channels**: a generic JSON webhook (``HT_ALERT_WEBHOOK_URL``, httpx POST) and chat or
  email through Apprise (``HT_ALERT_APPRISE_URLS``, one channel per URL; needs the optional
  ``apprise`` package: without it those channels are skipped with a warning and the
  webhook works alone);
* **once per channel**: a delivery ledger (``state/alerts.json``, written atomically after
  every message) records which event ids each channel got. A channel that fails is not
  recorded, so its events are sent on the next run; one that succeeds never gets them
  again. The one gap: a crash between a receiver's 2xx and the ledger write sends that
  message again, so every payload carries idempotency keys (each event's ``event_id``, and
  an ``Idempotency-Key`` header) for a receiver to drop a repeat: at-least-once on the wire,
  exactly-once as far as the ledger can know;
* **rate limit and digest**: at most ``HT_ALERT_MAX_PER_RUN`` messages a channel per run;
  when more events are new, they go as one digest message instead;
* **bounded**: only events at most ``HT_ALERT_MAX_AGE_HOURS`` older than the newest
  snapshot are candidates, so a first run or a new channel does not replay the history,
  and the ledger forgets what can no longer be a candidate;
* **secrets stay secret**: the URLs are ``SecretStr`` settings; channels are named by kind
  and position (``webhook``, ``apprise-1``), never by URL; every message that could hold
  one (an exception, httpx's and Apprise's log lines) is scrubbed first;
* **never fails the run**: a channel's failure is logged (scrubbed) and the run goes on.
"""

from flows.alerts.deliver import AlertsOutcome, ChannelOutcome, deliver_new_events

__all__ = ["AlertsOutcome", "ChannelOutcome", "deliver_new_events"]
