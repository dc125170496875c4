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
CHANGE_CAP_PP = 20.0  # day-over-day colours saturate at +-20 percentage points


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


def change_colour(change_pp: float | None, cap_pp: float = CHANGE_CAP_PP) -> str:
    """Colour of a bias change in percentage points (centred at 0, saturating at +-cap)."""
    if change_pp is None or math.isnan(change_pp):
        return ABSENT_COLOUR
    return ramp_colour(0.5 + change_pp / (2 * cap_pp))


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
