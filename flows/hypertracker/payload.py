"""The heatmap and cohort-ladder payloads: typed models and the invariants a payload must keep.

``parse_heatmap`` turns one response body into a :class:`HeatmapPayload` or raises
:class:`~flows.hypertracker.errors.PayloadError` listing *every* problem found, each with a
JSON path (``heatmap[12].segments[3].bias``). Two layers check a body:

1. Types (pydantic, strict): numbers must be JSON numbers (``"12.5"`` is an error), counts
   must be integers (``3.0`` is an error), required fields present, ranges respected
   (values and counts >= 0, bias in [0, 1]). Unknown fields are tolerated and reported in
   ``HeatmapPayload.extra_fields`` so callers can log schema drift; they stay in the archive.
2. Arithmetic, in one tight loop over the parsed rows: count == countLong + countShort,
   totalValue == totalLongValue + totalShortValue, bias == long/total to 3 decimals,
   segment.coin == its coin, unique coins, unique segment ids per coin, a non-empty heatmap.

This is the strict validator and the explainer: the live path and the rebuild check bodies
in bulk in DuckDB (``flows/lake/normalise.py``, the same invariants, plus the relations
across windows, which are warnings there) and come here for a body they flag, for reasons
with JSON paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

# The cohort ladder is defined once, in flows/cohorts.py (from the dbt seed). The names are
# re-exported here for flows/lake/normalise.py until it imports them from flows.cohorts.
from flows.cohorts import PNL_LADDER, SIZE_LADDER
from flows.cohorts import SEGMENT_IDS as KNOWN_SEGMENT_IDS
from flows.hypertracker.errors import PayloadError

WINDOW_ORDER: tuple[str, ...] = ("24h", "7d", "30d", "all")  # nested: each within the next

# Tolerances. Values are float sums of USD notional computed by the server; adding the same
# numbers in another order moves the result by a few ulps (~1e-16 relative per term), so a
# 1e-9 relative tolerance is far above float noise yet far below any real inconsistency
# ($1.24 on a $1.24B coin). The 0.01 absolute part (one cent) covers tiny rows, where a
# relative bound is smaller than the rounding of values printed with a few decimals.
VALUE_REL_TOL = 1e-9
VALUE_ABS_TOL = 0.01
# bias is long/total rounded to 3 decimals: an honest value is within 0.0005 of the exact
# share. 0.0015 leaves one more step of 0.001 for a server that rounds differently (floor,
# half-even on float noise) or computes bias from values a moment apart, while still
# catching a bias swapped with its complement or taken from another row.
BIAS_TOL = 0.0015


def _values_close(a: float, b: float) -> bool:
    return abs(a - b) <= VALUE_ABS_TOL + VALUE_REL_TOL * max(abs(a), abs(b))


# --- typed rows ------------------------------------------------------------------------
# The rows are TypedDicts shaped like the API (camelCase keys), validated by a pydantic
# TypeAdapter, which is cheaper than a BaseModel instance per row for the thousands of rows
# of one window.
#
# strict=True: no coercion, so "12.5" or true is rejected where a number is due and 3.0 where
# an int is due (an int is still accepted for a float field: JSON has one number type).
# extra="ignore": a new field does not break the pipeline; the invariant pass reports its
# name as drift (HeatmapPayload.extra_fields), and the raw archive keeps its value.
_ROW_CONFIG = ConfigDict(strict=True, extra="ignore")

NonNegFloat = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]


class CoinSegment(TypedDict):
    """One cohort's positions in one coin (absent from the API when the cohort holds none)."""

    __pydantic_config__ = _ROW_CONFIG  # type: ignore[misc]

    segmentId: int
    coin: str
    totalValue: NonNegFloat
    totalLongValue: NonNegFloat
    totalShortValue: NonNegFloat
    count: NonNegInt
    countLong: NonNegInt
    countShort: NonNegInt
    bias: Annotated[float, Field(ge=0, le=1)]


class Coin(TypedDict):
    """One perp coin: all positions in the window, and its per-cohort breakdown."""

    __pydantic_config__ = _ROW_CONFIG  # type: ignore[misc]

    coin: Annotated[str, Field(min_length=1)]
    totalValue: NonNegFloat
    totalLongValue: NonNegFloat
    totalShortValue: NonNegFloat
    count: NonNegInt
    countLong: NonNegInt
    countShort: NonNegInt
    segments: list[CoinSegment]


class _HeatmapBody(TypedDict):
    __pydantic_config__ = _ROW_CONFIG  # type: ignore[misc]

    heatmap: list[Coin]


@dataclass(frozen=True, slots=True)
class HeatmapPayload:
    """A validated heatmap response for one window.

    ``coins`` are the API's coin objects (camelCase keys, unknown fields dropped).
    ``extra_fields`` names fields the schema does not know (``heatmap[].segments[].x``);
    ``unknown_segment_ids`` the segment ids outside the known ladder 1..16 (kept, flagged).
    """

    window: str
    url: str
    coins: list[Coin] = field(repr=False)
    extra_fields: frozenset[str] = frozenset()
    unknown_segment_ids: frozenset[int] = frozenset()

    def by_coin(self) -> dict[str, Coin]:
        """The coins keyed by name (names are unique in a valid payload)."""
        return {c["coin"]: c for c in self.coins}


_COIN_FIELDS = frozenset(Coin.__annotations__)
_SEGMENT_FIELDS = frozenset(CoinSegment.__annotations__)
_BODY_ADAPTER: TypeAdapter[_HeatmapBody] = TypeAdapter(_HeatmapBody)


class Segment(BaseModel):
    """One cohort of the ladder as ``GET /segments`` describes it."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    id: int
    name: Annotated[str, Field(min_length=1)]
    category: str | None = None
    emoji: str | None = None
    # Key names and open ends are not documented (see the API reference): keep it as given.
    criteria: dict[str, Any] | None = None


_SEGMENTS_ADAPTER: TypeAdapter[list[Segment]] = TypeAdapter(list[Segment])


# --- parsing -----------------------------------------------------------------------------
def parse_heatmap(body: bytes, window: str, url: str) -> HeatmapPayload:
    """Parse and validate one heatmap response body.

    Raises PayloadError with every reason found (types, missing fields, invariants), each
    naming a JSON path. A valid payload may still carry unknown fields or segment ids: see
    ``extra_fields`` and ``unknown_segment_ids``.
    """
    doc = _load_json(body, window, url)
    reasons: list[str] = []
    if not isinstance(doc, dict):
        raise PayloadError(window, url, [f"$: expected a JSON object, got {_kind(doc)}"])
    rows = doc.get("heatmap")
    if not isinstance(rows, list):
        got = "nothing" if rows is None else _kind(rows)
        raise PayloadError(window, url, [f"heatmap: expected a list of coins, got {got}"])
    if not rows:
        raise PayloadError(window, url, ["heatmap: empty heatmap: the API returned no coins"])

    typed: _HeatmapBody | None = None
    try:
        typed = _BODY_ADAPTER.validate_python(doc)
    except ValidationError as exc:
        reasons.extend(_format_errors(exc))

    # Invariants run on the raw rows whether or not the types passed, so one bad field does
    # not hide the arithmetic problems elsewhere; a value of the wrong type is skipped here
    # (the type layer has reported it).
    extra, unknown = _check_heatmap_rows(rows, reasons)
    extra |= {k for k in doc if k != "heatmap"}
    if reasons or typed is None:
        raise PayloadError(window, url, reasons)
    return HeatmapPayload(
        window=window,
        url=url,
        coins=typed["heatmap"],
        extra_fields=frozenset(extra),
        unknown_segment_ids=frozenset(unknown),
    )


def parse_segments(body: bytes, url: str) -> list[Segment]:
    """Parse ``GET /segments``: a list of cohorts, bare or under ``segments``/``data``.

    Raises PayloadError (window None) on a shape it cannot read, a bad type, or a
    duplicated id.
    """
    doc = _load_json(body, None, url)
    items: Any = doc
    prefix = "$"
    if isinstance(doc, dict):
        for key in ("segments", "data", "items"):
            if isinstance(doc.get(key), list):
                items, prefix = doc[key], key
                break
    if not isinstance(items, list):
        raise PayloadError(None, url, [f"{prefix}: expected a list of segments, got {_kind(doc)}"])
    if not items:
        raise PayloadError(None, url, [f"{prefix}: the API returned no segments"])
    try:
        segments = _SEGMENTS_ADAPTER.validate_python(items)
    except ValidationError as exc:
        raise PayloadError(None, url, _format_errors(exc, root=prefix)) from None
    seen: set[int] = set()
    reasons = []
    for i, seg in enumerate(segments):
        if seg.id in seen:
            reasons.append(f"{prefix}[{i}].id: duplicate segment id {seg.id}")
        seen.add(seg.id)
    if reasons:
        raise PayloadError(None, url, reasons)
    return segments


def _load_json(body: bytes, window: str | None, url: str) -> Any:
    if not body:
        raise PayloadError(window, url, ["$: the body is empty"])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(
            window, url, [f"$: not valid JSON ({exc}); {len(body)} bytes received"]
        ) from None


def _check_heatmap_rows(rows: list[Any], reasons: list[str]) -> tuple[set[str], set[int]]:
    """Append invariant violations to ``reasons``; return (extra field paths, unknown ids).

    The hot loop of parsing (~4,600 rows a window): paths are only formatted for a row that
    fails, and a value of the wrong type is skipped (the type layer reports it).
    """
    extra: set[str] = set()
    unknown: set[int] = set()
    seen_coins: dict[str, int] = {}
    coin_fields, seg_fields, known = _COIN_FIELDS, _SEGMENT_FIELDS, KNOWN_SEGMENT_IDS
    for i, row in enumerate(rows):
        if type(row) is not dict:
            continue
        if row.keys() != coin_fields:
            extra.update(f"heatmap[].{k}" for k in row.keys() - coin_fields)
        name = row.get("coin")
        if type(name) is str:
            if name in seen_coins:
                reasons.append(
                    f"heatmap[{i}].coin: duplicate coin {name!r} "
                    f"(first at heatmap[{seen_coins[name]}])"
                )
            else:
                seen_coins[name] = i
        if not _measures_ok(row, False):
            _explain_measures(row, f"heatmap[{i}]", reasons, with_bias=False)
        segs = row.get("segments")
        if type(segs) is not list:
            continue
        seen_ids: dict[int, int] = {}
        for j, seg in enumerate(segs):
            if type(seg) is not dict:
                continue
            if seg.keys() != seg_fields:
                extra.update(f"heatmap[].segments[].{k}" for k in seg.keys() - seg_fields)
            sid = seg.get("segmentId")
            if type(sid) is int:
                if sid in seen_ids:
                    reasons.append(
                        f"heatmap[{i}].segments[{j}].segmentId: duplicate segment id {sid} in "
                        f"coin {name!r} (first at heatmap[{i}].segments[{seen_ids[sid]}])"
                    )
                else:
                    seen_ids[sid] = j
                if sid not in known:
                    unknown.add(sid)
            scoin = seg.get("coin")
            if scoin != name and type(scoin) is str and type(name) is str:
                reasons.append(f"heatmap[{i}].segments[{j}].coin: {scoin!r} inside coin {name!r}")
            if not _measures_ok(seg, True):
                _explain_measures(seg, f"heatmap[{i}].segments[{j}]", reasons, with_bias=True)
    return extra, unknown


def _measures_ok(row: dict[str, Any], with_bias: bool) -> bool:
    """Fast path: True when the row's arithmetic holds (or a value is mistyped: not ours)."""
    try:
        count, c_long, c_short = row["count"], row["countLong"], row["countShort"]
        total, v_long, v_short = row["totalValue"], row["totalLongValue"], row["totalShortValue"]
        if count != c_long + c_short:
            return False
        tol = VALUE_ABS_TOL + VALUE_REL_TOL * (
            total if total > v_long + v_short else v_long + v_short
        )
        if abs(total - v_long - v_short) > tol:
            return False
        return not (with_bias and total > 0 and abs(row["bias"] - v_long / total) > BIAS_TOL)
    except (KeyError, TypeError):
        return False  # a missing or non-numeric field: let the slow path sort it out


def _num(value: Any) -> float | None:
    # JSON numbers only: bool is an int subclass in Python and must not pass as one.
    t = type(value)
    if t is float or t is int:
        return value
    return None


def _explain_measures(
    row: dict[str, Any], path: str, reasons: list[str], *, with_bias: bool
) -> None:
    count, c_long, c_short = row.get("count"), row.get("countLong"), row.get("countShort")
    counts_typed = type(count) is int and type(c_long) is int and type(c_short) is int
    if counts_typed and count != c_long + c_short:
        reasons.append(f"{path}.count: {count} != countLong + countShort ({c_long} + {c_short})")
    total = _num(row.get("totalValue"))
    v_long = _num(row.get("totalLongValue"))
    v_short = _num(row.get("totalShortValue"))
    if total is None or v_long is None or v_short is None:
        return
    if not _values_close(total, v_long + v_short):
        reasons.append(
            f"{path}.totalValue: {total!r} != totalLongValue + totalShortValue "
            f"({v_long!r} + {v_short!r} = {v_long + v_short!r})"
        )
    if not with_bias:
        return
    bias = _num(row.get("bias"))
    if bias is not None and total > 0 and abs(bias - v_long / total) > BIAS_TOL:
        reasons.append(
            f"{path}.bias: {bias!r} but totalLongValue / totalValue = {v_long / total:.4f}"
        )


def _format_errors(exc: ValidationError, root: str = "") -> list[str]:
    out = []
    for err in exc.errors(include_url=False, include_context=False):
        path = _json_path(err["loc"], root)
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg}, got {_short(err['input'])}"
        out.append(f"{path}: {msg}")
    return out


def _json_path(loc: Iterable[int | str], root: str = "") -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "$"


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if value is None:
        return "null"
    return f"{type(value).__name__} {_short(value)}"


# How many examples a warning or a reason lists (lake/normalise.py).
MAX_EXAMPLES = 5


__all__ = [
    "BIAS_TOL",
    "KNOWN_SEGMENT_IDS",
    "PNL_LADDER",
    "SIZE_LADDER",
    "VALUE_ABS_TOL",
    "VALUE_REL_TOL",
    "Coin",
    "CoinSegment",
    "HeatmapPayload",
    "PayloadError",
    "Segment",
    "parse_heatmap",
    "parse_segments",
]
