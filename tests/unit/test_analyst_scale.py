"""The pure parts of the analyst's view: ladder order, colours, labels, top-N selection."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.analyst import scale


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# --------------------------------------------------------------------------- ladder


def test_ladder_order_is_size_ladder_then_pnl_ladder() -> None:
    assert scale.LADDER_ORDER == (16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    assert [c.ladder for c in scale.COHORTS] == ["size"] * 8 + ["pnl"] * 8
    assert [s for s in scale.LADDER_ORDER if scale.is_ladder_start(s)] == [8]


def test_smart_and_retail_groups() -> None:
    names = {s: scale.COHORT_BY_ID[s].name for s in scale.SMART_SEGMENTS + scale.RETAIL_SEGMENTS}
    assert names == {8: "Money Printer", 9: "Smart Money", 16: "Shrimp", 1: "Fish"}


# --------------------------------------------------------------------------- colours


def test_bias_scale_is_centred_on_neutral() -> None:
    assert scale.bias_colour(0.5) == "#f7f7f7"
    assert scale.bias_colour(0.0) == scale.SHORT_TO_LONG[0]
    assert scale.bias_colour(1.0) == scale.SHORT_TO_LONG[-1]


@pytest.mark.parametrize("distance", [0.05, 0.1, 0.25, 0.4, 0.5])
def test_short_is_orange_and_long_is_blue(distance: float) -> None:
    r, _, b = rgb(scale.bias_colour(0.5 - distance))
    assert r > b, "short side must be orange (red channel above blue)"
    r, _, b = rgb(scale.bias_colour(0.5 + distance))
    assert b > r, "long side must be blue"


def test_colour_gets_stronger_away_from_neutral() -> None:
    def lightness(colour: str) -> int:
        return sum(rgb(colour))

    for side in (-1, 1):
        values = [lightness(scale.bias_colour(0.5 + side * d / 10)) for d in range(6)]
        assert values == sorted(values, reverse=True), values


def test_absent_is_grey_never_neutral() -> None:
    assert scale.bias_colour(None) == scale.ABSENT_COLOUR
    assert scale.bias_colour(math.nan) == scale.ABSENT_COLOUR
    assert scale.bias_colour(0.5) != scale.ABSENT_COLOUR
    assert scale.change_colour(None) == scale.ABSENT_COLOUR


def test_out_of_range_bias_is_clipped() -> None:
    assert scale.bias_colour(1.3) == scale.bias_colour(1.0)
    assert scale.bias_colour(-0.2) == scale.bias_colour(0.0)


def test_change_scale_centres_on_zero_and_never_saturates() -> None:
    assert scale.change_colour(0.0) == scale.bias_colour(0.5)
    # Only the largest possible move reaches the end of the ramp: 35pp and 100pp differ.
    assert scale.change_colour(scale.CHANGE_FULL_PP) == scale.SHORT_TO_LONG[-1]
    assert scale.change_colour(-scale.CHANGE_FULL_PP) == scale.SHORT_TO_LONG[0]
    assert scale.change_colour(35.0) != scale.change_colour(100.0)
    assert scale.change_colour(20.0) != scale.change_colour(46.0)
    positions = [scale.change_position(pp) for pp in (0, 2, 5, 20, 35, 60, 100)]
    assert positions == sorted(set(positions))
    # Square root: a 5pp move is already a fifth of the way out, so small moves still show.
    assert scale.change_position(5.0) == pytest.approx(0.5 + math.sqrt(0.05) / 2)
    r, _, b = rgb(scale.change_colour(4.0))
    assert b > r  # more long = blue, as on the bias board


def test_size_weight_fades_small_cohorts() -> None:
    full = scale.bias_colour(1.0)
    small = scale.weighted(full, scale.size_weight(823))
    big = scale.weighted(full, scale.size_weight(228e6))
    assert big == full  # $10M and up: the colour itself
    assert small != full
    assert sum(rgb(small)) > sum(rgb(scale.weighted(full, scale.size_weight(5.7e6))))
    weights = [scale.size_weight(v) for v in (0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e9)]
    assert weights == sorted(weights)
    assert weights[0] == scale.SIZE_MIN_WEIGHT
    assert scale.weighted("#000000", 0) == "#ffffff"


def test_text_colour_reads_on_its_background() -> None:
    assert scale.text_colour(scale.SHORT_TO_LONG[0]) == "#ffffff"
    assert scale.text_colour(scale.SHORT_TO_LONG[-1]) == "#ffffff"
    assert scale.text_colour(scale.bias_colour(0.5)) == "#111111"
    assert scale.text_colour(scale.ABSENT_COLOUR) == "#111111"


@given(st.floats(min_value=0, max_value=1))
def test_every_bias_has_a_valid_colour(bias: float) -> None:
    assert re.fullmatch(r"#[0-9a-f]{6}", scale.bias_colour(bias))


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0, "$0"),
        (0.4, "$0"),
        (420, "$420"),
        (999.4, "$999"),
        (1_000, "$1.0K"),
        (850_000, "$850K"),
        (999_400, "$999K"),
        (999_960, "$1.0M"),  # never "$1000K"
        (1_234_567, "$1.2M"),
        (9_940_000, "$9.9M"),
        (9_960_000, "$10M"),
        (31_000_000, "$31M"),
        (31_400_000, "$31M"),
        (664_000_000, "$664M"),
        (1_234_000_000, "$1.2B"),
        (-3_100_000, "−$3.1M"),
        (None, "–"),
    ],
)
def test_format_usd(value: float | None, label: str) -> None:
    assert scale.format_usd(value) == label


def test_format_usd_signed() -> None:
    assert scale.format_usd(3_100_000, signed=True) == "+$3.1M"
    assert scale.format_usd(-48_000, signed=True) == "−$48K"
    assert scale.format_usd(0, signed=True) == "$0"


@given(st.floats(min_value=0, max_value=9e14, allow_nan=False))
def test_format_usd_never_shows_a_thousand_of_a_unit(value: float) -> None:
    label = scale.format_usd(value)
    match = re.fullmatch(r"\$(\d+(?:\.\d)?)([KMBT]?)", label)
    assert match, label
    number, unit = float(match.group(1)), match.group(2)
    if unit and unit != "T":
        assert 1.0 <= number < 1000, label
    if unit:
        size = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[unit]
        # One decimal below 10 of a unit, whole units from there: the rounding bounds the error.
        step = 0.1 if "." in match.group(1) else 1.0
        assert abs(number * size - value) <= step / 2 * size * (1 + 1e-9), label


@pytest.mark.parametrize(
    ("bias", "label"), [(0.6149, "0.61"), (0.5, "0.50"), (1.0, "1.00"), (0.0, "0.00"), (None, "–")]
)
def test_format_bias(bias: float | None, label: str) -> None:
    assert scale.format_bias(bias) == label


@pytest.mark.parametrize(
    ("pp", "label"),
    [(4.24, "+4.2pp"), (-0.84, "−0.8pp"), (0.04, "0.0pp"), (-0.04, "0.0pp"), (None, "–")],
)
def test_format_pp(pp: float | None, label: str) -> None:
    assert scale.format_pp(pp) == label


# --------------------------------------------------------------------------- top N


def test_top_coins_by_open_interest() -> None:
    oi = {"ETH": 600.0, "BTC": 1300.0, "SOL": 200.0, "xyz:GOLD": 200.0, "DEAD": 0.0}
    assert scale.top_coins(oi, 2) == ["BTC", "ETH"]
    # Ties go by name so that the board is stable from one run to the next.
    assert scale.top_coins(oi, 4) == ["BTC", "ETH", "SOL", "xyz:GOLD"]


def test_top_coins_skips_coins_without_open_interest() -> None:
    oi = {"BTC": 10.0, "DEAD": 0.0, "UNKNOWN": None}
    assert scale.top_coins(oi, 30) == ["BTC"]


def test_top_coins_rejects_an_empty_board() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        scale.top_coins({"BTC": 1.0}, 0)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1e12), max_size=40))
def test_top_coins_is_the_n_largest(oi: dict[str, float]) -> None:
    picked = scale.top_coins(oi, 5)
    positive = {c: v for c, v in oi.items() if v > 0}
    assert len(picked) == min(5, len(positive))
    assert [positive[c] for c in picked] == sorted((positive[c] for c in picked), reverse=True)
    if picked:
        assert all(v <= positive[picked[-1]] for c, v in positive.items() if c not in picked)
