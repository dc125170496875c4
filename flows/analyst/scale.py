"""The pure parts of the analyst's view: the cohort ladder, colours, labels, top-N selection.

Nothing here reads a database, so the HTML board and the PNG charts share one definition
of every colour and label, and unit tests pin them down. The cohorts themselves come from
:mod:`flows.cohorts` (the dbt seed), the one place that defines them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from flows import cohorts
from flows.cohorts import Cohort

# --------------------------------------------------------------------------- the cohorts

# Ladder order, as HyperTracker's heatmap shows it: the size ladder from the smallest wallets
# (Shrimp, id 16) up to Leviathan (7), then the PnL ladder from the biggest winners (Money
# Printer, 8) down to Giga-Rekt (15). flows/cohorts.py reads it from
# dbt_project/seeds/cohort_ladder.csv, so the board and dim_cohorts share one definition.
COHORTS: tuple[Cohort, ...] = cohorts.COHORTS
LADDER_ORDER: tuple[int, ...] = tuple(c.segment_id for c in COHORTS)
COHORT_BY_ID: dict[int, Cohort] = cohorts.BY_ID
LADDER_TITLES = {"size": "Size ladder (perp equity)", "pnl": "PnL ladder (all-time perp PnL)"}

# The groups of the smart-vs-retail spread: the same cohorts as the dbt model
# smart_retail_divergence_daily (an integration test checks the two agree at each day's close).
SMART_SEGMENTS: tuple[int, ...] = cohorts.GROUPS["smart_money"]  # Money Printer, Smart Money
RETAIL_SEGMENTS: tuple[int, ...] = cohorts.GROUPS["retail"]  # Shrimp, Fish


def is_ladder_start(segment_id: int) -> bool:
    """True for the first cohort of the PnL ladder: the board draws a divider before it."""
    return segment_id == cohorts.PNL_LADDER[0]


# --------------------------------------------------------------------------- colours

# One diverging ramp for every colour of the view: short = orange (ColorBrewer PuOr's orange
# arm), neutral = near white, long = blue (ColorBrewer RdBu's blue arm). Orange against blue
# stays distinct under the common colour-vision deficiencies (red-green), unlike red/green.
SHORT_TO_LONG: tuple[str, ...] = (
    "#7f3b08",
    "#b35806",
    "#e08214",
    "#fdb863",
    "#fee0b6",
    "#f7f7f7",
    "#d1e5f0",
    "#92c5de",
    "#4393c3",
    "#2166ac",
    "#053061",
)
ABSENT_COLOUR = "#c8c8c8"  # a cohort with no positions: grey, never the neutral colour
NEUTRAL = 0.5
# A bias moves at most 100 percentage points in a day. The day-over-day colour spans that
# whole range on a square-root scale, so it never saturates (a +-20pp cap did: many cells move
# 35-100pp) while a 2-5pp move still shows: 5pp sits a fifth of the way out, 20pp at 45%.
CHANGE_FULL_PP = 100.0
CHANGE_TICKS_PP = (-100.0, -50.0, -20.0, -5.0, 0.0, 5.0, 20.0, 50.0, 100.0)
# Colour says how big a cohort is, too: a cell's colour is mixed with white by its notional on
# a log scale, from SIZE_FLOOR_USD (a faint wash) to SIZE_FULL_USD and above (full colour), so
# a $823 cohort at bias 1.00 no longer looks like a $228M one. Fixed dollars, not per view,
# so that one colour means one thing in every window and on every day.
SIZE_FLOOR_USD = 1e3
SIZE_FULL_USD = 1e7
SIZE_MIN_WEIGHT = 0.1  # the faintest wash still shows which side the cohort leans


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(255.0, v))):02x}" for v in rgb)


def ramp_colour(position: float) -> str:
    """The ramp's colour at ``position`` in [0, 1] (clipped), linearly interpolated."""
    if math.isnan(position):
        raise ValueError("ramp position is NaN")
    position = min(1.0, max(0.0, position))
    scaled = position * (len(SHORT_TO_LONG) - 1)
    low = min(int(scaled), len(SHORT_TO_LONG) - 2)
    frac = scaled - low
    a, b = _rgb(SHORT_TO_LONG[low]), _rgb(SHORT_TO_LONG[low + 1])
    return _hex([a[i] + (b[i] - a[i]) * frac for i in range(3)])


def bias_colour(bias: float | None) -> str:
    """Colour of a bias (long share 0..1, centred at 0.5); grey when there is no bias."""
    if bias is None or math.isnan(bias):
        return ABSENT_COLOUR
    return ramp_colour(bias)


def change_position(change_pp: float) -> float:
    """Where a change in percentage points sits on the ramp: square root, +-100pp at the ends."""
    magnitude = math.sqrt(min(abs(change_pp), CHANGE_FULL_PP) / CHANGE_FULL_PP)
    return 0.5 + math.copysign(magnitude, change_pp) / 2


def change_colour(change_pp: float | None) -> str:
    """Colour of a bias change in percentage points (centred at 0, never saturating)."""
    if change_pp is None or math.isnan(change_pp):
        return ABSENT_COLOUR
    return ramp_colour(change_position(change_pp))


def size_weight(total_usd: float | None) -> float:
    """How much of a cell's colour shows, from its notional: SIZE_MIN_WEIGHT .. 1 (log)."""
    if not total_usd or total_usd <= SIZE_FLOOR_USD:
        return SIZE_MIN_WEIGHT
    span = math.log10(SIZE_FULL_USD) - math.log10(SIZE_FLOOR_USD)
    t = min(1.0, (math.log10(total_usd) - math.log10(SIZE_FLOOR_USD)) / span)
    return SIZE_MIN_WEIGHT + (1 - SIZE_MIN_WEIGHT) * t


def weighted(colour: str, weight: float) -> str:
    """``colour`` mixed with white: ``weight`` 1 is the colour itself, 0 white."""
    return _hex([255 + (c - 255) * weight for c in _rgb(colour)])


def text_colour(background: str) -> str:
    """Black or white text, whichever reads better on ``background`` (WCAG luminance)."""

    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(background))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white vs with black: pick the larger.
    return "#ffffff" if (1.05 / (luminance + 0.05)) > ((luminance + 0.05) / 0.05) else "#111111"


# --------------------------------------------------------------------------- labels

_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def format_usd(value: float | None, *, signed: bool = False) -> str:
    """Short USD label: ``$1.2B``, ``$31M``, ``$850K``, ``$420``; ``+``/``−`` when ``signed``.

    Two significant digits below 10 of a unit, whole units from 10 up; a value that rounds up
    to 1000 of a unit moves to the next unit (999,960 is ``$1.0M``, not ``$1000K``).
    """
    if value is None or math.isnan(value):
        return "–"
    sign = ""
    if value < 0:
        sign = "−"  # a real minus sign, as in the rest of the labels
    elif signed and value > 0:
        sign = "+"
    magnitude = abs(value)
    for size, unit in _UNITS:
        # 0.9995 of a unit already prints as 1.0 of it: move up rather than show 1000K.
        if magnitude >= size * 0.9995:
            scaled = magnitude / size
            text = f"{scaled:.1f}" if scaled < 9.95 else f"{scaled:.0f}"
            return f"{sign}${text}{unit}"
    text = f"{magnitude:.0f}"
    return f"{sign}${text}" if text != "0" else "$0"


def format_bias(bias: float | None) -> str:
    """A bias to two decimals (``0.61``); ``–`` when there is none."""
    if bias is None or math.isnan(bias):
        return "–"
    return f"{bias:.2f}"


def format_pp(change_pp: float | None) -> str:
    """A change in percentage points, signed: ``+4.2pp``, ``−0.8pp``, ``0.0pp``."""
    if change_pp is None or math.isnan(change_pp):
        return "–"
    rounded = round(change_pp, 1)
    if rounded == 0:
        return "0.0pp"
    return f"{'+' if rounded > 0 else '−'}{abs(rounded):.1f}pp"


# --------------------------------------------------------------------------- selection


def top_coins(open_interest: Mapping[str, float | None], n: int) -> list[str]:
    """The ``n`` coins with the most open interest, biggest first (ties: by name).

    Coins with no open interest (zero or unknown) are never picked: a board row of empty
    cells says nothing.
    """
    if n < 1:
        raise ValueError(f"top N must be at least 1, got {n}")
    ranked = sorted(
        ((coin, oi) for coin, oi in open_interest.items() if oi and oi > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return [coin for coin, _ in ranked[:n]]
