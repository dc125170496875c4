"""The history endpoints' payloads: one page at a time, validated, as :class:`MetricRow`.

``parse_position_metrics`` reads a ``/position-metrics/coin/{coin}/segment/{id}`` page and
``parse_segment_export`` the file an ``/exports/coins/{coin}/segment-metrics`` redirect
leads to. Both raise :class:`~flows.hypertracker.errors.PayloadError` listing every problem
with a JSON path (``metrics[3].positionCountLong``), so a page is archived verbatim first
and only then trusted. What they check:

- shape: the envelope (``metrics`` + ``nextCursor``; ``coin`` + ``data`` with
  ``columns``/``data`` per segment), required fields, JSON numbers (a count must be an
  integer, ``"12"`` is an error), a parseable time;
- sense: counts and values >= 0, the long side within the total, bias within [0, 1], the
  coin and cohort the page was asked for (a row of another coin is an error, not data).

Unknown fields are tolerated (the reference is unverified, see history-endpoints.md); the
export's columns are read by name, not by position, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from flows.hypertracker.client import Fetched, parse_utc
from flows.hypertracker.errors import PayloadError

# The long side may exceed the total by float dust only (the total is a float sum).
_VALUE_SLACK = 1e-9
EXPORT_REQUIRED = (
    "positionCount",
    "positionCountLong",
    "totalPositionValue",
    "totalPositionValueLong",
    "timestamp",
)


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One cohort of one coin in one window at one time, as a history endpoint gives it.

    ``bias`` is what the export states (rounded by the server); position-metrics gives none,
    and the share is derived from the values. Sizes (coin units), funding and unrealized PnL
    come from position-metrics only.
    """

    created_at: datetime
    coin: str
    segment_id: int
    window: str
    count: int
    count_long: int
    total_value: float
    total_long_value: float
    bias: float | None = None
    total_size: float | None = None
    total_long_size: float | None = None
    total_funding: float | None = None
    total_unrealized_pnl: float | None = None
    source: str = "position_metrics"


@dataclass(frozen=True, slots=True)
class MetricsPage:
    """One page of position-metrics: its rows (newest first, as sent) and the next cursor."""

    rows: list[MetricRow]
    next_cursor: str | None


def next_cursor(fetched: Fetched) -> str | None:
    """Only the page's ``nextCursor`` (a minimal check, so paging can go on or stop)."""
    doc = _load(fetched)
    cursor = doc.get("nextCursor") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or (cursor is not None and not isinstance(cursor, str)):
        raise PayloadError(
            fetched.window, fetched.url, ["nextCursor: expected an object with a string or null"]
        )
    return cursor or None


def parse_position_metrics(
    fetched: Fetched, *, coin: str, segment_id: int, window: str
) -> MetricsPage:
    """A position-metrics page, checked against the coin, cohort and window asked for."""
    doc = _load(fetched)
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), list):
        raise PayloadError(window, fetched.url, ["$: expected an object with a metrics list"])
    reasons: list[str] = []
    cursor = doc.get("nextCursor")
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        reasons.append(f"nextCursor: expected a non-empty string or null, got {cursor!r}")
    rows: list[MetricRow] = []
    for i, raw in enumerate(doc["metrics"]):
        where = f"metrics[{i}]"
        if not isinstance(raw, dict):
            reasons.append(f"{where}: expected an object")
            continue
        fields = _fields(raw, where, reasons, _PM_FIELDS)
        if fields is None:
            continue
        if raw.get("coin") != coin:
            reasons.append(f"{where}.coin: {raw.get('coin')!r}, asked for {coin!r}")
        if raw.get("segmentId") != segment_id:
            reasons.append(f"{where}.segmentId: {raw.get('segmentId')!r}, asked for {segment_id}")
        row = _row(
            fields,
            fields["createdAt"],
            coin,
            segment_id,
            window,
            total_size=fields.get("totalPositionSize"),
            total_long_size=fields.get("totalPositionSizeLong"),
            total_funding=fields.get("totalFunding"),
            total_unrealized_pnl=fields.get("totalUnrealizedPnl"),
        )
        _check_sides(row, where, reasons, long_size=True)
        rows.append(row)
    if reasons:
        raise PayloadError(window, fetched.url, reasons)
    return MetricsPage(rows=rows, next_cursor=cursor)


def parse_segment_export(fetched: Fetched, *, coin: str, window: str) -> list[MetricRow]:
    """A segment-metrics export: every cohort's points, checked, oldest first per cohort."""
    doc = _load(fetched)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise PayloadError(window, fetched.url, ["$: expected an object with a data list"])
    reasons: list[str] = []
    if doc.get("coin") != coin:
        reasons.append(f"coin: {doc.get('coin')!r}, asked for {coin!r}")
    rows: list[MetricRow] = []
    seen: set[int] = set()
    for i, entry in enumerate(doc["data"]):
        where = f"data[{i}]"
        segment = entry.get("segment") if isinstance(entry, dict) else None
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        seg_id = segment.get("id") if isinstance(segment, dict) else None
        if not isinstance(seg_id, int) or isinstance(seg_id, bool):
            reasons.append(f"{where}.segment.id: expected an integer, got {_short(seg_id)}")
            continue
        if seg_id in seen:
            reasons.append(f"{where}.segment.id: {seg_id} appears twice")
        seen.add(seg_id)
        columns = metrics.get("columns") if isinstance(metrics, dict) else None
        points = metrics.get("data") if isinstance(metrics, dict) else None
        if not isinstance(columns, list) or not isinstance(points, list):
            reasons.append(f"{where}.metrics: expected columns and data lists")
            continue
        missing = [c for c in EXPORT_REQUIRED if c not in columns]
        if missing:
            reasons.append(f"{where}.metrics.columns: missing {', '.join(missing)}")
            continue
        for j, point in enumerate(points):
            at = f"{where}.metrics.data[{j}]"
            if not isinstance(point, list) or len(point) != len(columns):
                reasons.append(f"{at}: expected a list of {len(columns)} values")
                continue
            fields = _fields(dict(zip(columns, point, strict=True)), at, reasons, _EXPORT_FIELDS)
            if fields is None:
                continue
            row = _row(
                fields,
                fields["timestamp"],
                coin,
                seg_id,
                window,
                bias=fields.get("bias"),
                source="segment_metrics_export",
            )
            _check_sides(row, at, reasons, long_size=False)
            rows.append(row)
    if reasons:
        raise PayloadError(window, fetched.url, reasons)
    return rows


def _row(
    fields: dict[str, Any],
    at: datetime,
    coin: str,
    segment_id: int,
    window: str,
    **extra: Any,
) -> MetricRow:
    """The measures both endpoints share, under the heatmap's names."""
    return MetricRow(
        created_at=at,
        coin=coin,
        segment_id=segment_id,
        window=window,
        count=fields["positionCount"],
        count_long=fields["positionCountLong"],
        total_value=fields["totalPositionValue"],
        total_long_value=fields["totalPositionValueLong"],
        **extra,
    )


# --- field checks ------------------------------------------------------------------------------

# name -> (kind, required): "time", "count" (integer >= 0), "value" (number >= 0), "number".
_PM_FIELDS = {
    "createdAt": ("time", True),
    "positionCount": ("count", True),
    "positionCountLong": ("count", True),
    "totalPositionValue": ("value", True),
    "totalPositionValueLong": ("value", True),
    "totalPositionSize": ("value", False),
    "totalPositionSizeLong": ("value", False),
    "totalFunding": ("number", False),
    "totalUnrealizedPnl": ("number", False),
}
_EXPORT_FIELDS = {
    "timestamp": ("time", True),
    "positionCount": ("count", True),
    "positionCountLong": ("count", True),
    "totalPositionValue": ("value", True),
    "totalPositionValueLong": ("value", True),
    "bias": ("share", False),
}


def _fields(
    raw: dict[str, Any], where: str, reasons: list[str], spec: dict[str, tuple[str, bool]]
) -> dict[str, Any] | None:
    """The typed fields of one row, or None (with reasons) when any is wrong."""
    out: dict[str, Any] = {}
    before = len(reasons)
    for name, (kind, required) in spec.items():
        value = raw.get(name)
        if value is None:
            if required:
                reasons.append(f"{where}.{name}: required field is missing")
            continue
        if kind == "time":
            try:
                out[name] = parse_utc(value)
            except ValueError as exc:
                reasons.append(f"{where}.{name}: {exc}")
            continue
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if kind == "count" and not (isinstance(value, int) and not isinstance(value, bool)):
            reasons.append(f"{where}.{name}: expected an integer, got {_short(value)}")
        elif not is_number:
            reasons.append(f"{where}.{name}: expected a number, got {_short(value)}")
        elif kind in ("count", "value") and value < 0:
            reasons.append(f"{where}.{name}: must be >= 0, got {value}")
        elif kind == "share" and not 0 <= value <= 1:
            reasons.append(f"{where}.{name}: must be within [0, 1], got {value}")
        else:
            out[name] = value
    return out if len(reasons) == before else None


def _check_sides(row: MetricRow, where: str, reasons: list[str], *, long_size: bool) -> None:
    if row.count_long > row.count:
        reasons.append(
            f"{where}.positionCountLong: {row.count_long} exceeds positionCount {row.count}"
        )
    if row.total_long_value > row.total_value * (1 + _VALUE_SLACK):
        reasons.append(
            f"{where}.totalPositionValueLong: {row.total_long_value} exceeds "
            f"totalPositionValue {row.total_value}"
        )
    size, size_long = row.total_size, row.total_long_size
    if not long_size or size is None or size_long is None:
        return
    if size_long > size * (1 + _VALUE_SLACK):
        reasons.append(f"{where}.totalPositionSizeLong: exceeds totalPositionSize")


def _load(fetched: Fetched) -> Any:
    try:
        return orjson.loads(fetched.body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(fetched.window, fetched.url, [f"$: not valid JSON ({exc})"]) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
