"""The 16 HyperTracker cohorts and the groups built from them, read from the dbt seed.

``dbt_project/seeds/cohort_ladder.csv`` is the one place that names the cohorts, orders
them, puts each on its ladder and in its group (smart money, retail, losers, whales). dbt
loads it as a seed; Python reads the same file here, so the payload checks, the report and
the simulator can never disagree with the marts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

SEED_PATH = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds" / "cohort_ladder.csv"


@dataclass(frozen=True)
class Cohort:
    """One cohort (HyperTracker's "segment") as the seed describes it."""

    segment_id: int
    name: str
    slug: str  # snake_case, for column names such as smart_money_bias
    ladder: str  # "size" (perp account equity) or "pnl" (all-time perp PnL)
    lower_usd: int | None  # None = open end
    upper_usd: int | None
    display_order: int  # 1-16: size ladder smallest first, then PnL ladder best first
    group: str | None  # smart_money, retail, losers, whales, or None
    emoji: str


def _bound(text: str) -> int | None:
    return int(text) if text.strip() else None


def load_cohorts(path: Path = SEED_PATH) -> tuple[Cohort, ...]:
    """The cohorts of a ladder seed file, in display order."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cohorts = [
        Cohort(
            segment_id=int(row["segment_id"]),
            name=row["cohort_name"],
            slug=row["cohort_slug"],
            ladder=row["ladder"],
            lower_usd=_bound(row["lower_bound_usd"]),
            upper_usd=_bound(row["upper_bound_usd"]),
            display_order=int(row["display_order"]),
            group=row["cohort_group"] or None,
            emoji=row["emoji"],
        )
        for row in rows
    ]
    return tuple(sorted(cohorts, key=lambda c: c.display_order))


COHORTS: tuple[Cohort, ...] = load_cohorts()
BY_ID: dict[int, Cohort] = {c.segment_id: c for c in COHORTS}
SEGMENT_IDS: frozenset[int] = frozenset(BY_ID)
SIZE_LADDER: tuple[int, ...] = tuple(c.segment_id for c in COHORTS if c.ladder == "size")
PNL_LADDER: tuple[int, ...] = tuple(c.segment_id for c in COHORTS if c.ladder == "pnl")
GROUPS: dict[str, tuple[int, ...]] = {
    group: tuple(c.segment_id for c in COHORTS if c.group == group)
    for group in dict.fromkeys(c.group for c in COHORTS if c.group)
}
