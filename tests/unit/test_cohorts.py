"""The cohort ladder, read once from the dbt seed: 16 cohorts, two ladders, four groups."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from flows import cohorts


def test_sixteen_cohorts_each_id_once() -> None:
    assert len(cohorts.COHORTS) == 16
    assert sorted(c.segment_id for c in cohorts.COHORTS) == list(range(1, 17))
    assert frozenset(range(1, 17)) == cohorts.SEGMENT_IDS
    assert {c.segment_id: c for c in cohorts.COHORTS} == cohorts.BY_ID


def test_display_order_is_size_ladder_then_pnl_ladder() -> None:
    assert [c.display_order for c in cohorts.COHORTS] == list(range(1, 17))
    assert [c.ladder for c in cohorts.COHORTS] == ["size"] * 8 + ["pnl"] * 8
    assert cohorts.SIZE_LADDER == (16, 1, 2, 3, 4, 5, 6, 7)
    assert cohorts.PNL_LADDER == (8, 9, 10, 11, 12, 13, 14, 15)
    assert (*cohorts.SIZE_LADDER, *cohorts.PNL_LADDER) == tuple(
        c.segment_id for c in cohorts.COHORTS
    )


def test_bounds_tile_each_ladder_with_open_ends_only_at_the_ends() -> None:
    size = [cohorts.BY_ID[i] for i in cohorts.SIZE_LADDER]  # smallest first
    pnl = [cohorts.BY_ID[i] for i in cohorts.PNL_LADDER][::-1]  # worst first
    for ladder in (size, pnl):
        assert all(a.upper_usd == b.lower_usd for a, b in itertools.pairwise(ladder))
        assert ladder[-1].upper_usd is None
        inner = [c.lower_usd for c in ladder[1:]] + [c.upper_usd for c in ladder[:-1]]
        assert None not in inner
        assert all(
            c.lower_usd is None or c.upper_usd is None or c.lower_usd < c.upper_usd for c in ladder
        )
    assert size[0].lower_usd == 0  # equity cannot be negative
    assert pnl[0].lower_usd is None  # no floor to losses
    assert cohorts.BY_ID[11].lower_usd == 0 == cohorts.BY_ID[12].upper_usd


def test_groups() -> None:
    assert cohorts.GROUPS == {
        "smart_money": (8, 9),
        "retail": (16, 1),
        "losers": (12, 13, 14, 15),
        "whales": (5, 6, 7),
    }
    assert cohorts.BY_ID[8].name == "Money Printer"
    assert cohorts.BY_ID[16].name == "Shrimp"


def test_names_slugs_and_emoji() -> None:
    assert len({c.name for c in cohorts.COHORTS}) == 16
    assert len({c.slug for c in cohorts.COHORTS}) == 16
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", c.slug) for c in cohorts.COHORTS)
    assert all(c.emoji for c in cohorts.COHORTS)
    assert cohorts.BY_ID[9].slug == "smart_money"


def test_load_cohorts_reads_any_ladder_file_in_display_order(tmp_path: Path) -> None:
    seed = tmp_path / "ladder.csv"
    seed.write_text(
        "segment_id,cohort_name,cohort_slug,ladder,lower_bound_usd,upper_bound_usd,"
        "display_order,cohort_group,emoji\n"
        "2,Big,big,size,100,,2,,🐋\n"
        "1,Small,small,size,0,100,1,retail,🦐\n",
        encoding="utf-8",
    )
    small, big = cohorts.load_cohorts(seed)
    assert small == cohorts.Cohort(1, "Small", "small", "size", 0, 100, 1, "retail", "🦐")
    assert big.upper_usd is None
    assert big.group is None
