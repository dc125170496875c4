"""Alerts without the pipeline: a small published file, fake and real channels."""

from __future__ import annotations

import importlib.util
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.alerts import deliver
from flows.alerts.channels import AppriseChannel, idempotency_key, payload, text
from flows.alerts.events import Event, recent_events
from flows.alerts.ledger import DeliveryLedger
from flows.alerts.query import SignalsQueryError, signals_sql
from flows.alerts.secrets import scrub
from flows.settings import Settings, get_settings

SECRET = "tok_hook_9d1f_unit_secret"
NEWEST = datetime(2026, 11, 3, 12, 0)


def publish_events(path: Path, events: list[tuple[str, str, datetime]]) -> None:
    """An analytics.duckdb with marts.signal_events and marts.about, as publish writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.signal_events (event_id VARCHAR, signal_type VARCHAR, "
        'snapshot_id VARCHAR, snapshot_at TIMESTAMP, "window" VARCHAR, coin VARCHAR, '
        "subject VARCHAR, subject_name VARCHAR, direction VARCHAR, signal_value DOUBLE, "
        "reference_value DOUBLE, total_usd DOUBLE, headline VARCHAR, details VARCHAR)"
    )
    for event_id, kind, at in events:
        con.execute(
            "INSERT INTO marts.signal_events VALUES (?, ?, 'S', ?, 'all', 'BTC', 'smart_money', "
            "'Smart Money', 'long', 0.6, 0.4, 2e6, ?, '{\"previous_side\": \"short\"}')",
            [event_id, kind, at, f"Smart Money {kind} {event_id}"],
        )
    con.execute("CREATE TABLE marts.about AS SELECT ?::TIMESTAMP AS newest_snapshot_at", [NEWEST])
    con.close()


class FakeChannel:
    def __init__(self, name: str = "fake", fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[tuple[list[str], bool]] = []

    def send(self, events: list[Event], *, digest: bool) -> None:
        if self.fail:
            raise RuntimeError(f"POST http://hooks.example/{SECRET}?key={SECRET} failed")
        self.sent.append(([e.event_id for e in events], digest))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return get_settings(data_dir=tmp_path / "data", alert_max_per_run=3)


def use(monkeypatch: pytest.MonkeyPatch, *channels: FakeChannel) -> None:
    monkeypatch.setattr(deliver, "configured_channels", lambda settings: (list(channels), []))


def test_scrub_removes_tokens_from_urls_and_messages() -> None:
    url = f"https://user:{SECRET}@hooks.example.com/services/{SECRET}?token={SECRET}"
    message = f"Client error '404' for url '{url}'"
    cleaned = scrub(message, [url])
    assert SECRET not in cleaned
    assert "hooks.example.com" not in cleaned or "***" in cleaned
    # An unknown URL still loses its path and query.
    assert scrub("see https://x.example/a/b?c=d now") == "see https://x.example/*** now"


def test_one_message_per_event_then_nothing_then_a_digest(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = FakeChannel()
    use(monkeypatch, channel)
    publish_events(settings.analytics_db_path, [("e1", "flip", NEWEST), ("e2", "extreme", NEWEST)])
    first = deliver.deliver_new_events(settings)
    assert sorted(channel.sent) == [(["e1"], False), (["e2"], False)]
    assert first.channels[0].delivered == 2
    deliver.deliver_new_events(settings)
    assert len(channel.sent) == 2  # once only
    # Five new at once: more than HT_ALERT_MAX_PER_RUN (3), so one digest of the five.
    new = [(f"d{i}", "divergence", NEWEST) for i in range(5)]
    settings.analytics_db_path.unlink()
    publish_events(settings.analytics_db_path, [("e1", "flip", NEWEST), *new])
    third = deliver.deliver_new_events(settings)
    assert channel.sent[-1] == ([f"d{i}" for i in range(5)], True)
    assert third.channels[0].digest
    assert third.channels[0].messages == 1


def test_a_failing_channel_never_raises_is_scrubbed_and_retried(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, good = FakeChannel("bad", fail=True), FakeChannel("good")
    use(monkeypatch, bad, good)
    publish_events(settings.analytics_db_path, [("e1", "flip", NEWEST)])
    outcome = deliver.deliver_new_events(settings)
    assert outcome.failed == ["bad"]
    assert SECRET not in (outcome.channels[0].error or "")
    assert good.sent == [(["e1"], False)]  # the other channel is not held up
    ledger_text = (settings.state_dir / "alerts.json").read_text()
    assert SECRET not in ledger_text
    bad.fail = False
    deliver.deliver_new_events(settings)
    assert bad.sent == [(["e1"], False)]
    assert good.sent == [(["e1"], False)]


def test_old_events_and_unselected_types_are_never_candidates(tmp_path: Path) -> None:
    db = tmp_path / "analytics.duckdb"
    publish_events(
        db,
        [("old", "flip", NEWEST - timedelta(hours=30)), ("new", "flip", NEWEST),
         ("div", "divergence", NEWEST)],
    )  # fmt: skip
    events, newest = recent_events(db, max_age_hours=24, types=("flip",))
    assert newest == NEWEST
    assert [e.event_id for e in events] == ["new"]
    assert events[0].details == {"previous_side": "short"}
    assert recent_events(tmp_path / "none.duckdb", max_age_hours=24, types=("flip",)) == ([], None)


def test_the_ledger_round_trips_and_forgets_what_can_never_come_back(tmp_path: Path) -> None:
    ledger = DeliveryLedger.open(tmp_path)
    ledger.record_success("webhook", [("a", NEWEST - timedelta(days=3)), ("b", NEWEST)], NEWEST)
    again = DeliveryLedger.open(tmp_path)
    assert again.delivered("webhook") == {"a", "b"}
    again.forget_before(NEWEST - timedelta(hours=24))
    assert again.delivered("webhook") == {"b"}


def test_payload_and_text_carry_idempotency_keys(tmp_path: Path) -> None:
    db = tmp_path / "analytics.duckdb"
    publish_events(db, [("e1", "flip", NEWEST), ("e2", "flip", NEWEST)])
    events, _ = recent_events(db, max_age_hours=24, types=("flip",))
    single = payload(events[:1], digest=False)
    assert single["idempotency_key"] == "e1"
    assert single["events"][0]["snapshot_at"] == "2026-11-03T12:00:00Z"
    digest = payload(events, digest=True)
    assert digest["idempotency_key"] == idempotency_key(list(reversed(events)))
    assert digest["title"] == "2 new signal events (2 flip)"
    _, body = text(events, digest=True)
    assert body.count("\n") == 1
    json.dumps(digest)  # serialisable as it is


def test_signals_sql_filters_and_refuses_what_it_cannot_read() -> None:
    sql = signals_sql(types=["flip"], coin="O'BTC", since="2026-11-30")
    assert "signal_type in ('flip')" in sql
    assert "coin = 'O''BTC'" in sql
    assert "timestamp '2026-11-30 00:00:00'" in sql
    assert "to_microseconds" in signals_sql(types=[], coin=None, since="6h")
    assert "where" not in signals_sql(types=[], coin=None, since=None)
    with pytest.raises(SignalsQueryError):
        signals_sql(types=["bogus"], coin=None, since=None)
    with pytest.raises(SignalsQueryError):
        signals_sql(types=[], coin=None, since="yesterday")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute(
        "CREATE TABLE marts.signal_events AS SELECT now()::TIMESTAMP AS snapshot_at, "
        "'flip' AS signal_type, 'all' AS \"window\", 'BTC' AS coin, 'x' AS subject, "
        "'X' AS subject_name, 'long' AS direction, 0.6 AS signal_value, 'h' AS headline, "
        "'id' AS event_id"
    )
    assert len(con.execute(signals_sql(types=["flip"], coin="BTC", since="2d")).fetchall()) == 1


def test_alert_secrets_never_show_in_settings_or_their_errors() -> None:
    settings = Settings(alert_webhook_url=f"  https://hooks.example/{SECRET}\n")
    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value() == f"https://hooks.example/{SECRET}"
    assert SECRET not in repr(settings)
    with pytest.raises(ValueError, match="HT_ALERT_WEBHOOK_URL") as caught:
        Settings(alert_webhook_url=f"ftp://{SECRET}")
    assert SECRET not in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("apprise") is None, reason="apprise not installed")
def test_apprise_delivers_title_and_body_to_a_json_endpoint(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        db = tmp_path / "analytics.duckdb"
        publish_events(db, [("e1", "flip", NEWEST)])
        events, _ = recent_events(db, max_age_hours=24, types=("flip",))
        channel = AppriseChannel(f"json://127.0.0.1:{server.server_address[1]}/n", "apprise-1")
        channel.send(events, digest=False)
        assert received
        assert received[0]["title"] == "flip: BTC Smart Money long"
        assert "Smart Money flip e1" in received[0]["message"]
    finally:
        server.shutdown()
        server.server_close()
