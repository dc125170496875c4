"""The history archive (pages, checkpoints, quarantine), the fetch's resume and budget, and
landing backfilled states in the lake from the archive alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from flows.backfill.archive import Checkpoint, HistoryArchive
from flows.backfill.fetch import Budget, fetch_deep
from flows.backfill.land import land_backfill, landed_states
from flows.backfill.plan import plan_backfill
from flows.hypertracker.client import Fetched
from flows.hypertracker.history import Page
from flows.quota import Ledger
from flows.settings import Settings

T0 = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
QUERY = Checkpoint(start="2026-11-05T00:00:00.000Z", end="2026-11-06T00:00:00.000Z", limit=2)


def body(coin: str, seg: int, times: list[datetime], cursor: str | None) -> bytes:
    metrics = [
        {
            "coin": coin,
            "segmentId": seg,
            "createdAt": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "positionCount": 3,
            "positionCountLong": 2,
            "totalPositionValue": 300.0 + seg,
            "totalPositionValueLong": 200.0,
            "totalPositionSize": 3.0,
            "totalPositionSizeLong": 2.0,
        }
        for t in times
    ]
    return orjson.dumps({"metrics": metrics, "nextCursor": cursor})


def fetched(data: bytes) -> Fetched:
    return Fetched(
        endpoint="position_metrics",
        window="all",
        url="http://sim/position-metrics/coin/BTC/segment/1",
        status=200,
        body=data,
        fetched_at=T0,
        elapsed_s=0.01,
    )


@pytest.fixture
def archive(tmp_path: Path) -> HistoryArchive:
    return HistoryArchive(tmp_path / "archive", tmp_path / "quarantine")


def test_a_page_is_stored_before_its_checkpoint_moves(archive: HistoryArchive) -> None:
    at = archive.resume_point("xyz:GOLD", "all", 1, QUERY)
    assert at == QUERY
    after = archive.store_page("xyz:GOLD", "all", 1, at, fetched(b"{}"), next_cursor="c2")
    folder = archive.series_dir("xyz:GOLD", "all", 1)
    assert "coin=xyz%3AGOLD" in str(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "00001.json.zst",
        "00001.meta.json",
        "checkpoint.json",
    ]
    assert after == Checkpoint(QUERY.start, QUERY.end, 2, next_cursor="c2", pages=1)
    assert archive.resume_point("xyz:GOLD", "all", 1, QUERY) == after
    meta = orjson.loads((folder / "00001.meta.json").read_bytes())
    assert meta["cursor"] is None
    assert meta["next_cursor"] == "c2"
    assert [f.body for f in archive.series_pages("xyz:GOLD", "all", 1)] == [b"{}"]


def test_another_query_starts_the_series_afresh(archive: HistoryArchive) -> None:
    archive.store_page("BTC", "all", 1, QUERY, fetched(b"{}"), next_cursor="c2")
    other = Checkpoint(QUERY.start, "2026-11-07T00:00:00.000Z", 2)
    assert archive.resume_point("BTC", "all", 1, other) == other
    assert not any(archive.series_dir("BTC", "all", 1).glob("*.json*"))


@dataclass
class FakeHistory:
    """Serves one series of two pages; counts what it was asked for."""

    asked: list[str | None]
    fail_at: int | None = None
    ledger: Ledger | None = None  # records each request, as the client's on_request does

    def position_metrics_pages(self, coin, seg, window, start, end, *, limit, cursor=None):
        pages = {
            None: (body(coin, seg, [T0 + timedelta(minutes=20)], "c2"), "c2"),
            "c2": (body(coin, seg, [T0], None), None),
        }
        while True:
            if self.fail_at is not None and len(self.asked) == self.fail_at:
                raise KeyboardInterrupt  # a kill between two requests
            self.asked.append(cursor)
            if self.ledger is not None:
                self.ledger.record()
            data, following = pages[cursor]
            yield Page(fetched=fetched(data), cursor=cursor, next_cursor=following)
            if following is None:
                return
            cursor = following


def _plan(tmp_path: Path) -> tuple[Settings, object]:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    plan = plan_backfill(
        settings,
        Ledger.open(settings),
        depth="deep",
        coins=["BTC"],
        windows=["all"],
        start=T0 - timedelta(hours=1),
        now=T0 + timedelta(hours=1),
    )
    return settings, plan


def test_a_killed_fetch_resumes_without_asking_for_a_stored_page(
    tmp_path: Path, archive: HistoryArchive
) -> None:
    settings, plan = _plan(tmp_path)
    budget = Budget(settings, Ledger.open(settings), plan)
    first = FakeHistory(asked=[], fail_at=1)
    with pytest.raises(KeyboardInterrupt):
        fetch_deep(first, archive, plan, end=T0 + timedelta(hours=1), limit=2, budget=budget)
    assert first.asked == [None]
    second = FakeHistory(asked=[])
    out = fetch_deep(second, archive, plan, end=T0 + timedelta(hours=1), limit=2, budget=budget)
    # Cohort 1 resumed at its stored cursor; every other cohort started from scratch.
    assert second.asked[:1] == ["c2"]
    assert second.asked.count(None) == 15
    assert out.series_done == 16
    assert out.paused is None
    again = FakeHistory(asked=[])
    out = fetch_deep(again, archive, plan, end=T0 + timedelta(hours=1), limit=2, budget=budget)
    assert again.asked == []
    assert out.series_skipped == 16


def test_the_budget_pauses_before_the_scheduled_runs_share(
    tmp_path: Path, archive: HistoryArchive
) -> None:
    settings, plan = _plan(tmp_path)
    settings = settings.model_copy(update={"requests_per_day": 10_000})
    ledger = Ledger.open(settings)
    ledger.record(10_000 - plan.scheduled_rest_of_today - 1)  # room for one more page
    asked: list[str | None] = []
    out = fetch_deep(
        FakeHistory(asked=asked, ledger=ledger),
        archive,
        plan,
        end=T0 + timedelta(hours=1),
        limit=2,
        budget=Budget(settings, ledger, plan),
    )
    assert out.paused
    assert "resumes where it stopped" in out.paused
    assert asked == [None]  # one page fitted; the next would have eaten the runs' share


def test_a_malformed_page_is_quarantined_and_not_checkpointed(
    tmp_path: Path, archive: HistoryArchive
) -> None:
    settings, plan = _plan(tmp_path)

    class Bad(FakeHistory):
        def position_metrics_pages(self, coin, seg, window, start, end, *, limit, cursor=None):
            self.asked.append(cursor)
            yield Page(
                fetched=fetched(b'{"metrics": [1], "nextCursor": null}'),
                cursor=None,
                next_cursor=None,
            )

    out = fetch_deep(
        Bad(asked=[]),
        archive,
        plan,
        end=T0,
        limit=2,
        budget=Budget(settings, Ledger.open(settings), plan),
    )
    assert len(out.quarantined) == 16
    assert archive.checkpoint("BTC", "all", 1) is None
    notes = list((tmp_path / "quarantine" / "history").glob("*/*.note.json"))
    assert len(notes) == 16


def test_landing_from_the_archive_alone(tmp_path: Path, archive: HistoryArchive) -> None:
    for seg in (1, 2, 11):
        at = archive.resume_point("BTC", "all", seg, QUERY)
        late = [T0 + timedelta(minutes=20, seconds=-seg)]
        at = archive.store_page(
            "BTC", "all", seg, at, fetched(body("BTC", seg, late, "c")), next_cursor="c"
        )
        archive.store_page(
            "BTC", "all", seg, at, fetched(body("BTC", seg, [T0], None)), next_cursor=None
        )
    lake = tmp_path / "lake"
    landed = land_backfill(lake, archive)
    assert landed.states == 2
    assert landed.cohort_rows == 6
    assert landed.unfit == []
    ids = landed_states(lake)
    assert ids == ["20261105T120000000Z", "20261105T121959000Z"]
    cohorts = pq.read_table(
        next((lake / "backfill_cohorts").rglob(f"{ids[0]}.parquet"))
    ).to_pylist()
    assert {r["source"] for r in cohorts} == {"position_metrics"}
    assert cohorts[0]["total_size"] == 3.0
    coins = pq.read_table(next((lake / "backfill_coins").rglob(f"{ids[0]}.parquet"))).to_pylist()
    (coin,) = coins
    assert coin["totals_derived"] is True
    assert coin["segment_count"] == 3
    mark = pq.read_table(next((lake / "backfill_states").rglob(f"{ids[0]}.parquet"))).to_pylist()
    assert len(mark[0]["pages_sha256"]) == 3
    # Again: the same files, nothing removed.
    assert land_backfill(lake, archive).removed == 0
    assert landed_states(lake) == ids
