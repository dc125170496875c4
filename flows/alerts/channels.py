"""The channels an event can go to: a JSON webhook (httpx) and Apprise (chat, email).

A channel sends one message: one event, or a digest of several. It raises on failure (the
caller scrubs and records it); it never logs or returns its URL.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from flows.alerts.events import Event

USER_AGENT = "hypertracker-cohorts-alerts/1"
DIGEST_LINES = 25  # events listed in a digest's text; the JSON digest holds every one


class Channel(Protocol):
    name: str  # in the ledger and the logs: never the URL

    def send(self, events: list[Event], *, digest: bool) -> None: ...


def idempotency_key(events: list[Event]) -> str:
    """The same for the same events, whichever run sends them: the event's id, or a hash
    of a digest's ids."""
    if len(events) == 1:
        return events[0].event_id
    ids = "\n".join(sorted(e.event_id for e in events))
    return "digest-" + hashlib.sha256(ids.encode()).hexdigest()[:32]


def digest_title(events: list[Event]) -> str:
    counts = Counter(e.signal_type for e in events)
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    return f"{len(events)} new signal events ({parts})"


def payload(events: list[Event], *, digest: bool) -> dict[str, Any]:
    """The webhook's JSON body."""
    return {
        "kind": "hypertracker.signal_events",
        "version": 1,
        "idempotency_key": idempotency_key(events),
        "digest": digest,
        "count": len(events),
        "title": digest_title(events) if digest else events[0].headline,
        "sent_at": datetime.now(UTC).isoformat(),
        "events": [e.as_json() for e in events],
    }


def text(events: list[Event], *, digest: bool) -> tuple[str, str]:
    """(title, body) for people."""
    if not digest:
        event = events[0]
        when = f"{event.snapshot_at:%Y-%m-%d %H:%M} UTC"
        return (
            f"{event.signal_type}: {event.coin} {event.subject_name} {event.direction}",
            f"{event.headline}\nsnapshot {event.snapshot_id} ({when})",
        )
    lines = [f"- {e.headline}" for e in events[:DIGEST_LINES]]
    if len(events) > DIGEST_LINES:
        lines.append(f"... and {len(events) - DIGEST_LINES} more (ht signals lists them)")
    return digest_title(events), "\n".join(lines)


@dataclass
class WebhookChannel:
    """POST the payload as JSON; any 2xx is delivered, anything else raises."""

    url: str
    timeout_s: float
    name: str = "webhook"

    def send(self, events: list[Event], *, digest: bool) -> None:
        body = payload(events, digest=digest)
        headers = {"Idempotency-Key": body["idempotency_key"], "User-Agent": USER_AGENT}
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            response = client.post(self.url, json=body, headers=headers)
        if not response.is_success:
            # The status alone: the exception httpx would raise names the URL.
            raise RuntimeError(f"the webhook answered HTTP {response.status_code}")


def apprise_available() -> bool:
    return importlib.util.find_spec("apprise") is not None


@dataclass
class AppriseChannel:
    """One Apprise URL (Telegram, Discord, Slack, e-mail, ...): title and text."""

    url: str
    name: str

    def send(self, events: list[Event], *, digest: bool) -> None:
        import apprise

        notifier = apprise.Apprise()
        if not notifier.add(self.url):
            raise RuntimeError("Apprise does not accept this URL (check its scheme and form)")
        title, body = text(events, digest=digest)
        if not notifier.notify(title=title, body=body):
            raise RuntimeError("Apprise could not deliver the message")


def split_urls(value: str) -> list[str]:
    """HT_ALERT_APPRISE_URLS: URLs separated by commas or whitespace."""
    return [part for part in value.replace(",", " ").split() if part]
