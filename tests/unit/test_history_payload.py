"""The history pages' parsers: every problem listed with its JSON path, in one error."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from flows.hypertracker.client import Fetched
from flows.hypertracker.errors import PayloadError
from flows.hypertracker.history_payload import (
    next_cursor,
    parse_position_metrics,
    parse_segment_export,
)

URL = "https://api.example.test/api/external/position-metrics/coin/BTC/segment/2"


def fetched(doc: object) -> Fetched:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Fetched("position_metrics", "all", URL, 200, body, datetime.now(UTC), 0.1)


def pm_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "createdAt": "2026-11-02T10:00:00.000Z",
        "coin": "BTC",
        "segmentId": 2,
        "positionCount": 10,
        "positionCountLong": 4,
        "totalPositionValue": 1000.0,
        "totalPositionValueLong": 400.0,
        "totalPositionSize": 0.01,
        "totalPositionSizeLong": 0.004,
        "totalFunding": -1.5,
        "totalUnrealizedPnl": 12.0,
        "somethingNew": True,  # tolerated
    }
    row.update(overrides)
    return row


def parse(doc: object):
    return parse_position_metrics(fetched(doc), coin="BTC", segment_id=2, window="all")


def test_a_good_page() -> None:
    page = parse({"metrics": [pm_row()], "nextCursor": "abc"})
    (row,) = page.rows
    assert page.next_cursor == "abc"
    assert row.created_at == datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert (row.count, row.count_long, row.total_long_value) == (10, 4, 400.0)
    assert row.bias is None
    assert row.source == "position_metrics"


def test_every_problem_is_listed_with_its_path() -> None:
    rows = [
        pm_row(positionCount="10"),
        pm_row(positionCountLong=11),
        pm_row(coin="ETH", totalPositionValueLong=2000.0),
        pm_row(createdAt="soon"),
        pm_row(totalPositionValue=-1.0),
        "not a row",
    ]
    with pytest.raises(PayloadError) as caught:
        parse({"metrics": rows, "nextCursor": 5})
    reasons = caught.value.reasons
    assert "nextCursor: expected a non-empty string or null, got 5" in reasons
    assert "metrics[0].positionCount: expected an integer, got '10'" in reasons
    assert "metrics[1].positionCountLong: 11 exceeds positionCount 10" in reasons
    assert "metrics[2].coin: 'ETH', asked for 'BTC'" in reasons
    assert any(r.startswith("metrics[2].totalPositionValueLong: 2000.0 exceeds") for r in reasons)
    assert any(r.startswith("metrics[3].createdAt: not an ISO-8601 time") for r in reasons)
    assert "metrics[4].totalPositionValue: must be >= 0, got -1.0" in reasons
    assert "metrics[5]: expected an object" in reasons
    assert URL in str(caught.value)


@pytest.mark.parametrize("body", [b"<html>", orjson.dumps([1]), orjson.dumps({"rows": []})])
def test_not_a_page(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse(body)


def test_next_cursor_alone() -> None:
    assert next_cursor(fetched({"metrics": [], "nextCursor": None})) is None
    assert next_cursor(fetched({"metrics": [], "nextCursor": "x"})) == "x"
    with pytest.raises(PayloadError):
        next_cursor(fetched({"nextCursor": 3}))


def export(columns: list[str], points: list[list[object]], seg: int = 4) -> dict[str, object]:
    segment = {"id": seg, "name": "x", "emoji": "", "category": "size", "criteria": {}}
    return {
        "coin": "BTC",
        "data": [{"segment": segment, "metrics": {"columns": columns, "data": points}}],
    }


def test_export_columns_are_read_by_name() -> None:
    columns = [
        "timestamp",
        "bias",
        "totalPositionValueLong",
        "totalPositionValue",
        "positionCountLong",
        "positionCount",
    ]
    doc = export(
        columns,
        [["2026-11-02T00:00:00Z", 0.4, 40.0, 100.0, 1, 3], [1793577600000, 0.5, 5.0, 10.0, 1, 2]],
    )
    rows = parse_segment_export(fetched(doc), coin="BTC", window="7d")
    assert [(r.segment_id, r.count, r.total_value, r.bias) for r in rows] == [
        (4, 3, 100.0, 0.4),
        (4, 2, 10.0, 0.5),
    ]
    assert rows[1].created_at == datetime.fromtimestamp(1793577600, UTC)
    assert rows[0].source == "segment_metrics_export"


def test_export_problems() -> None:
    doc = export(["timestamp", "positionCount"], [])
    doc["data"].append({"segment": {"id": "x"}, "metrics": {}})  # type: ignore[attr-defined]
    doc["coin"] = "ETH"
    with pytest.raises(PayloadError) as caught:
        parse_segment_export(fetched(doc), coin="BTC", window="all")
    reasons = caught.value.reasons
    assert "coin: 'ETH', asked for 'BTC'" in reasons
    assert any(r.startswith("data[0].metrics.columns: missing positionCountLong") for r in reasons)
    assert "data[1].segment.id: expected an integer, got 'x'" in reasons
    columns = [
        "positionCount",
        "positionCountLong",
        "totalPositionValue",
        "totalPositionValueLong",
        "bias",
        "timestamp",
    ]
    with pytest.raises(PayloadError, match=r"data\[0\].metrics.data\[0\].bias: must be within"):
        parse_segment_export(
            fetched(export(columns, [[1, 1, 1.0, 1.0, 1.5, "2026-11-02T00:00:00Z"]])),
            coin="BTC",
            window="all",
        )
