"""History rows grouped into HyperTracker states, and those states as heatmap rows.

**Grouping.** A history row has no state id, only a time (``createdAt``, or the export's
``timestamp``), and the reference does not promise that it equals the state's
``lastUpdate``. What is known: HyperTracker refreshes every 15-30 minutes (the status's
``nextUpdate`` is ``lastUpdate`` + 15 min), and one refresh writes every coin, cohort and
window. So the rows of one refresh lie close together and two refreshes lie at least 15
minutes apart. :func:`group_states` sorts all rows by time and cuts wherever two
neighbours are more than ``gap`` (5 min) apart: a third of the shortest interval, so a
refresh may spread its writes over minutes and still never merge with the next one. A
group that spans more than ``max_span`` (5 min) contradicts that model (stamps that drift,
or a refresh every few minutes): its rows are reported as unfit rather than guessed into
states. Within a group, a cohort given twice (overlapping pages, or the export and
position-metrics for the same time) is kept once if both copies agree, and reported if they
do not.

**The state's time.** ``lastUpdate`` is set when a refresh is complete, after its rows are
written, so the group's *latest* row time is taken as the state's time; it can fall a little
before the live ``lastUpdate`` of the same state (in the simulator by up to 20 s). Matching a
backfilled state to a live one is therefore by nearest time within ``gap``
(:func:`match_live`), never by equal ids.

**Heatmap rows.** :func:`heatmap_rows` maps a state to rows of the lake's ``heatmap_cohorts``
and ``heatmap_coins`` columns (flows/lake/tables.py), by the vendor's mapping
(history-endpoints.md): short side = total - long, bias = long / total rounded to 3 decimals
as the heatmap rounds it (the export's own bias is used when given). The history endpoints
give no coin totals: the coin row is the **size ladder's sum** (every position sits in
exactly one size cohort), a few unassigned positions short of the heatmap's total, and is
flagged ``totals_derived``. A cohort row with no position (if the API sends zero rows) is
dropped, as the heatmap leaves such a cohort out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.cohorts import SEGMENT_IDS, SIZE_LADDER
from flows.hypertracker.history_payload import MetricRow

GAP = timedelta(minutes=5)
MAX_SPAN = timedelta(minutes=5)
BIAS_DECIMALS = 3  # the heatmap's rounding


@dataclass(frozen=True, slots=True)
class HistoryState:
    """The rows of one HyperTracker refresh. ``last_update`` is its latest row time."""

    last_update: datetime
    first_row_at: datetime
    rows: tuple[MetricRow, ...] = field(repr=False)

    @property
    def snapshot_id(self) -> str:
        """``YYYYMMDDTHHMMSSmmmZ`` of ``last_update``, as live snapshots are named."""
        t = self.last_update.astimezone(UTC)
        return f"{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z"

    @property
    def spread(self) -> timedelta:
        return self.last_update - self.first_row_at


@dataclass(frozen=True, slots=True)
class UnfitRow:
    """A row left out of every state, and why."""

    row: MetricRow
    reason: str


@dataclass(frozen=True, slots=True)
class Grouping:
    states: list[HistoryState]
    unfit: list[UnfitRow]


def group_states(
    rows: Iterable[MetricRow], *, gap: timedelta = GAP, max_span: timedelta = MAX_SPAN
) -> Grouping:
    """Rows into states by time (see the module's docstring); states oldest first."""
    ordered = sorted(rows, key=lambda r: r.created_at)
    clusters: list[list[MetricRow]] = []
    for row in ordered:
        if clusters and row.created_at - clusters[-1][-1].created_at <= gap:
            clusters[-1].append(row)
        else:
            clusters.append([row])
    states: list[HistoryState] = []
    unfit: list[UnfitRow] = []
    for cluster in clusters:
        span = cluster[-1].created_at - cluster[0].created_at
        if span > max_span:
            reason = (
                f"rows from {cluster[0].created_at:%Y-%m-%d %H:%M:%S} to "
                f"{cluster[-1].created_at:%H:%M:%S} UTC follow each other within {gap} but span "
                f"{span}, more than one refresh may ({max_span}): cannot tell the states apart"
            )
            unfit += [UnfitRow(r, reason) for r in cluster]
            continue
        kept, clashes = _deduplicate(cluster)
        unfit += clashes
        if kept:
            states.append(
                HistoryState(
                    last_update=max(r.created_at for r in kept),
                    first_row_at=min(r.created_at for r in kept),
                    rows=tuple(kept),
                )
            )
    return Grouping(states=states, unfit=unfit)


def _deduplicate(cluster: Sequence[MetricRow]) -> tuple[list[MetricRow], list[UnfitRow]]:
    by_key: dict[tuple[str, str, int], list[MetricRow]] = defaultdict(list)
    for row in cluster:
        by_key[(row.coin, row.window, row.segment_id)].append(row)
    kept: list[MetricRow] = []
    unfit: list[UnfitRow] = []
    for (coin, window, seg), copies in by_key.items():
        if len({_measures(r) for r in copies}) == 1:
            # Position-metrics first: it carries sizes, funding and PnL the export lacks.
            kept.append(min(copies, key=lambda r: r.source != "position_metrics"))
            continue
        reason = (
            f"{len(copies)} different rows for {coin} cohort {seg} window {window} in one "
            "state: keep neither (fetch that series again)"
        )
        unfit += [UnfitRow(r, reason) for r in copies]
    return kept, unfit


def _measures(row: MetricRow) -> tuple[int, int, float, float]:
    return (row.count, row.count_long, row.total_value, row.total_long_value)


def match_live(
    backfilled: Sequence[HistoryState], live: Iterable[datetime], *, within: timedelta = GAP
) -> dict[str, datetime | None]:
    """Each backfilled state's live ``lastUpdate`` (nearest within ``within``), by snapshot id."""
    times = sorted(t.astimezone(UTC) for t in live)
    out: dict[str, datetime | None] = {}
    for state in backfilled:
        near = min(times, key=lambda t: abs(t - state.last_update), default=None)
        ok = near is not None and abs(near - state.last_update) <= within
        out[state.snapshot_id] = near if ok else None
    return out


# --- heatmap rows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeatmapRows:
    """A state as lake rows: ``heatmap_coins`` and ``heatmap_cohorts`` columns, then
    ``source`` (and, on coins, ``totals_derived``)."""

    coins: list[dict[str, Any]]
    cohorts: list[dict[str, Any]]


def heatmap_rows(state: HistoryState, *, source: str = "backfill") -> HeatmapRows:
    """The state's rows, cohorts by (window, coin, segment), coins by (window, coin)."""
    keys = {
        "snapshot_id": state.snapshot_id,
        "last_update": state.last_update.astimezone(UTC).replace(tzinfo=None),  # naive UTC
    }
    cohorts: list[dict[str, Any]] = []
    for row in sorted(state.rows, key=lambda r: (r.window, r.coin, r.segment_id)):
        if row.count == 0:
            continue  # the heatmap lists no cohort without positions
        cohorts.append(
            {
                **keys,
                "window": row.window,
                "coin": row.coin,
                "segment_id": row.segment_id,
                "total_value": row.total_value,
                "total_long_value": row.total_long_value,
                "total_short_value": row.total_value - row.total_long_value,
                "count": row.count,
                "count_long": row.count_long,
                "count_short": row.count - row.count_long,
                "bias": _bias(row),
                "is_known_segment": row.segment_id in SEGMENT_IDS,
                "source": source,
            }
        )
    return HeatmapRows(coins=_coin_totals(keys, cohorts, source), cohorts=cohorts)


def _bias(row: MetricRow) -> float:
    if row.bias is not None:
        return row.bias
    if row.total_value <= 0:
        return 0.0  # positions worth nothing lean nowhere; the heatmap never shows one
    return round(row.total_long_value / row.total_value, BIAS_DECIMALS)


def _coin_totals(
    keys: dict[str, Any], cohorts: list[dict[str, Any]], source: str
) -> list[dict[str, Any]]:
    """One row per (window, coin): the size ladder's sums (flagged ``totals_derived``)."""
    size_ids = set(SIZE_LADDER)
    sums: dict[tuple[str, str], dict[str, Any]] = {}
    for c in cohorts:
        key = (c["window"], c["coin"])
        acc = sums.setdefault(
            key,
            {
                **keys,
                "window": c["window"],
                "coin": c["coin"],
                "total_value": 0.0,
                "total_long_value": 0.0,
                "total_short_value": 0.0,
                "count": 0,
                "count_long": 0,
                "count_short": 0,
                "segment_count": 0,
                "source": source,
                "totals_derived": True,
            },
        )
        acc["segment_count"] += 1
        if c["segment_id"] in size_ids:
            for name in (
                "total_value",
                "total_long_value",
                "total_short_value",
                "count",
                "count_long",
                "count_short",
            ):
                acc[name] += c[name]
    return [sums[k] for k in sorted(sums)]
