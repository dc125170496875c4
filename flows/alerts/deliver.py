"""After a publish: every new signal event to every channel, once, without failing the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flows.alerts.channels import (
    AppriseChannel,
    Channel,
    WebhookChannel,
    apprise_available,
    split_urls,
)
from flows.alerts.events import Event, recent_events
from flows.alerts.ledger import DeliveryLedger
from flows.alerts.secrets import scrub, scrubbed_logs
from flows.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ChannelOutcome:
    """What one channel got in this run."""

    channel: str
    new_events: int = 0
    delivered: int = 0
    messages: int = 0
    digest: bool = False
    error: str | None = None  # scrubbed: never a URL's secret part


@dataclass
class AlertsOutcome:
    """One delivery round: the candidates and each channel's outcome."""

    candidates: int = 0
    channels: list[ChannelOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # channels that could not be set up

    @property
    def failed(self) -> list[str]:
        return [c.channel for c in self.channels if c.error]


def _secrets(settings: Settings) -> list[str]:
    values = []
    for secret in (settings.alert_webhook_url, settings.alert_apprise_urls, settings.api_token):
        if secret is not None:
            value = secret.get_secret_value()
            values.append(value)
            values.extend(split_urls(value))
    return values


def configured_channels(settings: Settings) -> tuple[list[Channel], list[str]]:
    """The channels the settings name, and the notes on those that cannot run."""
    channels: list[Channel] = []
    skipped: list[str] = []
    if settings.alert_webhook_url is not None:
        channels.append(
            WebhookChannel(settings.alert_webhook_url.get_secret_value(), settings.alert_timeout_s)
        )
    if settings.alert_apprise_urls is not None:
        urls = split_urls(settings.alert_apprise_urls.get_secret_value())
        for i, url in enumerate(urls, start=1):
            # Named by position and service (the scheme): the rest of the URL is secret.
            name = f"apprise-{i}:{urlsplit(url).scheme or 'unknown'}"
            if apprise_available():
                channels.append(AppriseChannel(url, name))
            else:
                skipped.append(
                    f"{name}: HT_ALERT_APPRISE_URLS is set but the apprise package is not "
                    "installed (pip install apprise); its events wait for it"
                )
    return channels, skipped


def _deliver_to(
    channel: Channel, events: list[Event], ledger: DeliveryLedger, settings: Settings,
    secrets: list[str],
) -> ChannelOutcome:  # fmt: skip
    done = ledger.delivered(channel.name)
    new = [e for e in events if e.event_id not in done]
    outcome = ChannelOutcome(channel.name, new_events=len(new))
    if not new:
        return outcome
    # Rate limit: one message per event up to the limit, else one digest of them all.
    digest = len(new) > settings.alert_max_per_run
    batches = [new] if digest else [[e] for e in new]
    outcome.digest = digest
    for batch in batches:
        try:
            channel.send(batch, digest=digest)
        except Exception as exc:  # a channel's failure never fails the run
            outcome.error = scrub(f"{type(exc).__name__}: {exc}", secrets)
            ledger.record_failure(channel.name, outcome.error, datetime.now(UTC))
            log.warning(
                "alerts: %s failed (%s); %d event(s) wait for the next run",
                channel.name,
                outcome.error,
                len(new) - outcome.delivered,
            )
            break
        ledger.record_success(
            channel.name, [(e.event_id, e.snapshot_at) for e in batch], datetime.now(UTC)
        )
        outcome.messages += 1
        outcome.delivered += len(batch)
    return outcome


def deliver_new_events(settings: Settings) -> AlertsOutcome:
    """Send the published events each configured channel has not had yet; never raises.

    Candidates are the events of ``HT_ALERT_TYPES`` at most ``HT_ALERT_MAX_AGE_HOURS``
    before the newest published snapshot. Per channel: one message per new event, or one
    digest when more than ``HT_ALERT_MAX_PER_RUN`` are new; each message accepted is
    recorded in the ledger at once, and a failure leaves the rest for the next run.
    """
    outcome = AlertsOutcome()
    secrets = _secrets(settings)
    try:
        channels, outcome.skipped = configured_channels(settings)
        for note in outcome.skipped:
            log.warning("alerts: %s", note)
        if not channels:
            return outcome
        events, newest_at = recent_events(
            settings.analytics_db_path,
            max_age_hours=settings.alert_max_age_hours,
            types=tuple(settings.alert_types),
        )
        outcome.candidates = len(events)
        ledger = DeliveryLedger.open(settings.state_dir)
        if newest_at is not None:
            ledger.forget_before(newest_at - timedelta(hours=settings.alert_max_age_hours))
        with scrubbed_logs(secrets):
            for channel in channels:
                outcome.channels.append(_deliver_to(channel, events, ledger, settings, secrets))
        ledger.save()
    except Exception as exc:  # reading the warehouse or the ledger: still not the run's failure
        log.warning("alerts: not delivered (%s)", scrub(f"{type(exc).__name__}: {exc}", secrets))
        outcome.channels.append(ChannelOutcome("all", error=scrub(str(exc), secrets)))
        return outcome
    for result in outcome.channels:
        if result.delivered:
            log.info(
                "alerts: %s got %d new event(s) in %d message(s)%s",
                result.channel,
                result.delivered,
                result.messages,
                " (a digest)" if result.digest else "",
            )
    return outcome
