"""Alerts end to end: lake -> dbt (signal_events) -> publish -> a real webhook receiver.

A local HTTP server on 127.0.0.1 stands in for the user's webhook; its URL carries a
secret token in the path, as real webhook URLs do. Each event reaches it once across
runs, a run whose delivery fails does not fail and is retried by the next one, and the
secret is in no file of the data folder and no captured log line. The same through the
scheduled run (elt_flow against the simulator): delivery follows each run, a webhook
answering 500 fails no run (the next run delivers, new state or not), and Prefect's
database holds the secret nowhere either.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from flows.alerts import deliver_new_events
from flows.lake.archive import snapshot_id_for
from flows.lake.parquet import lake_path, write_table
from flows.lake.tables import TABLES
from flows.publish import publish
from flows.settings import Settings, get_settings
from flows.transform import build
from flows.warehouse import connect, load_lake, register_lake

pytestmark = pytest.mark.integration

SECRET = "whsec_Zq81_never_in_a_file_or_log_5c0d"
START = datetime(2026, 11, 1, 10, 0)


class Receiver:
    """A webhook receiver: records every POST; answers 500 while ``failing``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if receiver.failing else 200
                receiver.requests.append(
                    {"path": self.path, "status": status, "headers": dict(self.headers),
                     "body": json.loads(body)}
                )  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{SECRET}"

    def delivered_ids(self) -> list[str]:
        return [
            event["event_id"]
            for request in self.requests
            if request["status"] == 200
            for event in request["body"]["events"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def put(settings: Settings, table: str, key: str, rows: list[dict[str, object]]) -> None:
    write_table(lake_path(settings.lake_dir, table, key), pa.Table.from_pylist(rows, TABLES[table]))


def land(settings: Settings, at: datetime, smart_bias: float) -> None:
    """One snapshot, window all, BTC: Smart Money (9) at smart_bias, Shrimp (16) the mirror,
    each holding 2M USD."""
    sid = snapshot_id_for(at)
    keys = {"snapshot_id": sid, "last_update": at, "window": "all"}
    counts = {"count": 10, "count_long": 5, "count_short": 5}
    cohorts = []
    for segment_id, bias in ((9, smart_bias), (16, 1 - smart_bias)):
        cohorts.append(
            {**keys, "coin": "BTC", "segment_id": segment_id, "total_value": 2e6,
             "total_long_value": 2e6 * bias, "total_short_value": 2e6 * (1 - bias), **counts,
             "bias": round(bias, 3), "is_known_segment": True}
        )  # fmt: skip
    put(settings, "heatmap_cohorts", sid, cohorts)
    put(
        settings,
        "heatmap_coins",
        sid,
        [{**keys, "coin": "BTC", "total_value": 4e6, "total_long_value": 2e6,
          "total_short_value": 2e6, **counts, "segment_count": 2}],
    )  # fmt: skip
    put(
        settings,
        "snapshots",
        sid,
        [{**keys, "next_update": None, "fetched_at": at, "url": "http://x/heatmap",
          "http_status": 200, "body_bytes": 1, "body_sha256": "sha", "coin_count": 1}],
    )  # fmt: skip


def build_and_publish(settings: Settings) -> None:
    load_lake(settings)
    outcome = build(settings)
    assert outcome.success, [f"{f['name']}: {f['message']}" for f in outcome.failures]
    publish(settings)


def test_each_event_reaches_the_webhook_once_failures_retry_and_the_secret_stays_secret(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx's request lines too: they name the URL
    # flows/hypertracker/client.py quiets httpx when it is imported (by an earlier test or
    # not): its lines are wanted here, whatever ran before.
    caplog.set_level(logging.DEBUG, logger="httpx")
    data_dir = tmp_path / "data"
    settings = get_settings(data_dir=data_dir, alert_webhook_url=receiver.url)
    con = connect(settings.build_db_path)
    register_lake(con, settings.lake_dir)
    con.close()

    # Run 1: Smart Money short, then long (Shrimp the other way): two flips.
    land(settings, START, 0.3)
    land(settings, START + timedelta(minutes=15), 0.7)
    build_and_publish(settings)
    first = deliver_new_events(settings)
    assert first.candidates == 2
    assert not first.failed
    assert len(receiver.requests) == 2  # one message per event: under HT_ALERT_MAX_PER_RUN
    assert {r["body"]["events"][0]["subject"] for r in receiver.requests} == {
        "smart_money", "shrimp"
    }  # fmt: skip
    for request in receiver.requests:
        event = request["body"]["events"][0]
        assert request["headers"]["Idempotency-Key"] == event["event_id"]
        assert event["signal_type"] == "flip"
        assert event["coin"] == "BTC"
    smart = next(r for r in receiver.requests if r["body"]["events"][0]["subject"] == "smart_money")
    assert smart["body"]["events"][0]["direction"] == "long"
    assert smart["body"]["events"][0]["details"]["previous_side"] == "short"

    # Run 2, nothing new: nothing sent again.
    again = deliver_new_events(settings)
    assert again.candidates == 2
    assert len(receiver.requests) == 2

    # Run 3: the flips back, while the receiver fails: the run goes on, nothing recorded.
    land(settings, START + timedelta(minutes=30), 0.3)
    build_and_publish(settings)
    receiver.failing = True
    failed = deliver_new_events(settings)
    assert failed.failed == ["webhook"]
    assert "HTTP 500" in (failed.channels[0].error or "")
    assert len(receiver.requests) == 3  # one attempt, then it waits for the next run

    # Run 4: the receiver is back: the two waiting events arrive, the old ones do not.
    receiver.failing = False
    retried = deliver_new_events(settings)
    assert not retried.failed
    assert retried.channels[0].delivered == 2
    ids = receiver.delivered_ids()
    assert len(ids) == 4
    assert len(set(ids)) == 4

    ledger = json.loads((settings.state_dir / "alerts.json").read_text())
    assert set(ledger["channels"]["webhook"]["delivered"]) == set(ids)

    # The secret: in no file under the data folder, in no log line, in no outcome.
    leaks = [
        path for path in data_dir.rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]  # fmt: skip
    assert not leaks
    assert caplog.records, "the deliveries logged nothing at all"
    assert SECRET not in caplog.text
    # httpx logged every request, and its lines came out scrubbed.
    assert "HTTP Request: POST ***" in caplog.text
    assert SECRET not in repr(failed) + repr(retried) + repr(settings)


def published_event_ids(settings: Settings) -> set[str]:
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        rows = con.execute("SELECT event_id FROM marts.signal_events").fetchall()
        return {row[0] for row in rows}
    finally:
        con.close()


@pytest.mark.usefixtures("prefect_harness")
def test_the_scheduled_run_delivers_after_its_publish_and_a_failing_webhook_fails_no_run(
    env: Path, sim: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from flows.pipeline import elt_flow
    from tests.integration.test_token_secrecy import prefect_database

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    monkeypatch.setenv("HT_ALERT_WEBHOOK_URL", receiver.url)
    settings = get_settings()

    # Runs 1 and 2 (two states: the second has flips) while the webhook answers 500: both
    # publish, the delivery was tried and nothing is recorded as delivered.
    receiver.failing = True
    assert elt_flow().outcome == "published"
    sim.advance_to_next_state()
    assert elt_flow().outcome == "published"
    waiting = published_event_ids(settings)
    assert waiting, "the simulator's second state fired no signal: the test proves nothing"
    assert receiver.requests
    assert {r["status"] for r in receiver.requests} == {500}
    ledger = json.loads((settings.state_dir / "alerts.json").read_text())
    assert ledger["channels"]["webhook"]["delivered"] == {}
    assert ledger["channels"]["webhook"]["last_error"].endswith("the webhook answered HTTP 500")

    # Run 3 finds no new state, the webhook back: the waiting events arrive all the same.
    receiver.failing = False
    assert elt_flow().outcome == "no new data"
    assert set(receiver.delivered_ids()) == waiting
    # Runs 4 and 5: only the new states' events. Each event once, whether one message each
    # or a digest.
    for _ in range(2):
        sim.advance_to_next_state()
        assert elt_flow().outcome == "published"
    ids = receiver.delivered_ids()
    assert len(ids) == len(set(ids))
    assert set(ids) == published_event_ids(settings)
    assert waiting <= set(ids)

    leaks = [
        path for path in env.rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]  # fmt: skip
    assert not leaks
    # Prefect's database (flow and task runs, their parameters, the logs it was sent).
    db = prefect_database()
    assert db.exists()
    for path in db.parent.glob(db.name + "*"):
        assert SECRET.encode() not in path.read_bytes()
    # Everything logged or printed: Prefect's console handler writes the run's lines.
    logged = caplog.text + "".join(capfd.readouterr())
    assert "alerts: webhook failed (RuntimeError: the webhook answered HTTP 500)" in logged
    assert "HTTP Request: POST ***" in logged
    assert SECRET not in logged
