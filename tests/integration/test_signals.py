"""The signal models on real lake files: an incremental build finds what a full refresh
finds, and a snapshot held back by a failed test takes its events with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.settings import Settings, get_settings
from flows.transform import run_dbt
from flows.warehouse import LOADS, PUBLISHES, connect, hold_unpublished, load_lake, register_lake
from tests.integration.test_alerts_webhook import START, land

pytestmark = pytest.mark.integration

SIGNALS = ["--select", "+signal_events", "--exclude", "resource_type:unit_test",
           "--indirect-selection", "cautious"]  # fmt: skip


def build_signals(settings: Settings, *extra: str) -> None:
    outcome = run_dbt(settings, ["build", *SIGNALS, *extra])
    assert outcome.success, [f"{f['name']}: {f['message']}" for f in outcome.failures]


def mark_published(settings: Settings) -> None:
    """What a publish records (the marts' build only is run here: the rest is not built)."""
    with connect(settings.build_db_path) as con:
        con.execute(f"INSERT INTO {PUBLISHES} SELECT max(load_id), now() FROM {LOADS}")


def events(settings: Settings) -> set[tuple[str, ...]]:
    con = duckdb.connect(str(settings.build_db_path), read_only=True)
    try:
        return set(
            con.execute(
                "SELECT event_id, signal_type, snapshot_id, direction FROM marts.signal_events"
            ).fetchall()
        )
    finally:
        con.close()


def take(settings: Settings, *snapshots: tuple[datetime, float]) -> set[tuple[str, ...]]:
    """Land the snapshots (time, Smart Money's bias), build, publish; the events then."""
    for at, bias in snapshots:
        land(settings, at, bias)
    load_lake(settings)
    build_signals(settings)
    mark_published(settings)
    return events(settings)


def test_incremental_builds_match_a_full_refresh_and_held_snapshots_lose_their_events(
    tmp_path: Path,
) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    con = connect(settings.build_db_path)
    register_lake(con, settings.lake_dir)
    con.close()
    at = [START + timedelta(minutes=15 * i) for i in range(5)]

    # Build 1: short, then long: Smart Money flips long, Shrimp short.
    first = take(settings, (at[0], 0.3), (at[1], 0.7))
    assert {(kind, direction) for _, kind, _, direction in first} == {
        ("flip", "long"), ("flip", "short")
    }  # fmt: skip

    # Build 2, incremental: two more transitions; a wobble inside the band adds nothing.
    second = take(settings, (at[2], 0.52), (at[3], 0.3), (at[4], 0.7))
    assert first < second
    assert len(second) == 6

    # A full refresh finds exactly the same events.
    build_signals(settings, "--full-refresh")
    assert events(settings) == second

    # A new snapshot whose build failed a test is held back: its events go with it.
    land(settings, START + timedelta(minutes=90), 0.3)
    load_lake(settings)
    build_signals(settings)
    held_id = max(snapshot for _, _, snapshot, _ in events(settings))
    assert len(events(settings)) == 8
    with connect(settings.build_db_path) as con:
        assert hold_unpublished(con, ["a failed test"], "detail") == [held_id]
    build_signals(settings)
    assert events(settings) == second
