"""PNG charts (matplotlib, Agg): the heatmap board, the day-over-day board, cohort history.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot: no global state
and no GUI backend (saving a PNG uses Agg), safe in a scheduled run or a thread. Colours and
labels come from ``scale`` so the PNGs and the HTML board always agree.
"""

from __future__ import annotations

import datetime as dt
import io
import math

from matplotlib.collections import PatchCollection
from matplotlib.colors import ListedColormap
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from flows.analyst.data import Board, History
from flows.analyst.scale import (
    ABSENT_COLOUR,
    CHANGE_TICKS_PP,
    COHORT_BY_ID,
    COHORTS,
    LADDER_TITLES,
    bias_colour,
    change_colour,
    change_position,
    format_bias,
    format_pp,
    format_usd,
    ramp_colour,
    size_weight,
    text_colour,
    weighted,
)

DPI = 100
# The ladders are ordered, so their lines are too, and no colour serves both ladders: the size
# ladder light to dark in one hue (viridis, small wallets to Leviathan), the PnL ladder along
# the board's own ramp, the biggest winners blue to the biggest losers orange.
SIZE_LINE_COLOURS = (
    "#b5de2b",
    "#6ece58",
    "#35b779",
    "#1f9e89",
    "#26828e",
    "#31688e",
    "#3e4989",
    "#482878",
)
PNL_LINE_COLOURS = (
    "#053061",
    "#2166ac",
    "#4393c3",
    "#92c5de",
    "#fdb863",
    "#e08214",
    "#b35806",
    "#7f3b08",
)
LINE_STYLES = ("-", "--", "-", "--", "-", "--", "-", "--")  # neighbours apart by dash too


def _png(fig: Figure, *, palette: bool = False) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    if not palette:
        return buf.getvalue()
    # Line charts survive a 256-colour palette unchanged to the eye at a third of the bytes
    # (the report embeds one per window). Boards are kept true-colour: their colours are data.
    from PIL import Image

    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out, format="PNG", compress_level=6
    )
    return out.getvalue()


def _rgb01(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255


def _cohort_label(name: str) -> str:
    return name.replace(" ", "\n", 1)


def cell_text(board: Board, coin: str, segment_id: int) -> tuple[str, str, str]:
    """(background colour, first line, second line) of one cell: shared with the HTML board."""
    cell = board.cell(coin, segment_id)
    if board.kind == "bias":
        if cell is None or cell.bias is None:
            return ABSENT_COLOUR, "–", ""
        colour = weighted(bias_colour(cell.bias), size_weight(cell.total_usd))
        return colour, format_bias(cell.bias), format_usd(cell.total_usd)
    if cell is None:
        return ABSENT_COLOUR, "–", ""
    if cell.status in ("new", "closed", "gap"):
        label = {"new": "new", "closed": "closed", "gap": "no D-1"}[cell.status]
        return ABSENT_COLOUR, label, format_usd(cell.usd_change, signed=True)
    if cell.change_pp is None:
        return ABSENT_COLOUR, "–", format_usd(cell.usd_change, signed=True)
    # The larger of the two days' notional: a cohort that shrank to nothing moved a lot.
    before = cell.total_usd - (cell.usd_change or 0)
    return (
        weighted(change_colour(cell.change_pp), size_weight(max(cell.total_usd, before))),
        format_pp(cell.change_pp),
        format_usd(cell.usd_change, signed=True),
    )


def board_png(board: Board, title: str) -> bytes:
    """The board as a PNG: coins down, cohorts across, size and PnL ladders apart."""
    rows = len(board.coins)
    cell_w, cell_h = 0.78, 0.34
    width = 1.4 + 16 * cell_w + 0.4
    height = 1.7 + max(rows, 1) * cell_h + 0.9
    fig = Figure(figsize=(width, height))
    top = 1 - 1.25 / height
    bottom = 0.85 / height
    left = 1.3 / width
    gap = 0.25 / width
    axis_w = (1 - left - 0.15 / width - gap) / 2
    for i, ladder in enumerate(("size", "pnl")):
        ax = fig.add_axes((left + i * (axis_w + gap), bottom, axis_w, top - bottom))
        cohorts = [c for c in COHORTS if c.ladder == ladder]
        ax.set_xlim(0, len(cohorts))
        ax.set_ylim(rows, 0)
        # One image for all backgrounds and one collection for the hatching: hundreds of
        # separate patches cost more to draw than the text.
        rgb = [
            [_rgb01(cell_text(board, coin, c.segment_id)[0]) for c in cohorts]
            for coin in board.coins
        ]
        if rows:
            ax.imshow(
                rgb, extent=(0, len(cohorts), rows, 0), aspect="auto", interpolation="nearest"
            )
        absent = []
        for x, cohort in enumerate(cohorts):
            for y, coin in enumerate(board.coins):
                colour, first, second = cell_text(board, coin, cohort.segment_id)
                is_absent = colour == ABSENT_COLOUR
                if is_absent:
                    absent.append(Rectangle((x, y), 1, 1))
                ax.text(
                    x + 0.5,
                    y + 0.5,
                    f"{first}\n{second}" if second else first,
                    ha="center",
                    va="center",
                    fontsize=6.6,
                    color="#333333" if is_absent else text_colour(colour),
                    parse_math=False,  # "$" in labels is a dollar, not TeX
                )
        if absent:
            ax.add_collection(
                PatchCollection(
                    absent, facecolor="none", edgecolor="#9a9a9a", hatch="////", linewidth=0
                )
            )
        # White grid lines between cells, as on the HTML board.
        ax.vlines(range(1, len(cohorts)), 0, rows, color="white", linewidth=0.8)
        ax.hlines(range(1, rows), 0, len(cohorts), color="white", linewidth=0.8)
        ax.set_xticks([x + 0.5 for x in range(len(cohorts))])
        ax.set_xticklabels([_cohort_label(c.name) for c in cohorts], fontsize=7.2)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.set_title(LADDER_TITLES[ladder], fontsize=9, pad=24, loc="left", fontweight="bold")
        ax.set_yticks([y + 0.5 for y in range(rows)])
        if i == 0:
            ax.set_yticklabels(
                [f"{c}  {format_usd(board.open_interest.get(c))}" for c in board.coins],
                fontsize=7.2,
            )
            ax.text(-0.12, -0.6, "coin · OI", ha="right", va="bottom", fontsize=7, color="#555555")
        else:
            ax.set_yticklabels([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title, x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=11)
    _colour_key(fig, board.kind, width, height)
    return _png(fig)


def _colour_key(fig: Figure, kind: str, width: float, height: float) -> None:
    ax = fig.add_axes((0.3, 0.28 / height, 0.4, 0.16 / height))
    steps = 101
    positions = [i / (steps - 1) for i in range(steps)]
    cmap = ListedColormap([ramp_colour(p) for p in positions])
    ax.imshow([positions], aspect="auto", cmap=cmap, extent=(0, 1, 0, 1))
    ax.set_yticks([])
    faint = "; faint = small notional (full colour from $10M)"
    if kind == "bias":
        ax.set_xticks([0, 0.5, 1])
        ax.set_xticklabels(["0 all short", "0.5 neutral", "1 all long"], fontsize=7)
        note = "bias = long share of USD notional; grey = no position" + faint
    else:
        ax.set_xticks([change_position(t) for t in CHANGE_TICKS_PP])
        ax.set_xticklabels([format_pp(t) for t in CHANGE_TICKS_PP], fontsize=6.5)
        note = "bias change vs the previous close (square-root scale); grey = new/closed" + faint
    ax.set_title(note, fontsize=7, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)


def history_title(history: History) -> str:
    """The chart's title: the coin, the window and the span actually held, never a wish."""
    if not history.times:
        return f"{history.coin}: bias per cohort, window {history.window}: no snapshot held"
    first, last = history.times[0], history.times[-1]
    days = (last - first).total_seconds() / 86400
    return (
        f"{history.coin}: bias per cohort, window {history.window}, "
        f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC "
        f"({days:.1f} days held, {len(history.times)} snapshots)"
    )


BAND_COLOUR = "#f6e7b4"  # backfilled periods, as on the page (report.css: svg .band)
BACKFILL_TITLES = {
    "position_metrics": "backfilled: position metrics",
    "segment_metrics_export": "backfilled: 12-hourly export",
}


def backfilled_spans(history: History) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """(first, last, source) of each run of consecutive backfilled states, one source each."""
    spans: list[tuple[dt.datetime, dt.datetime, str]] = []
    for at, source in zip(history.times, history.sources, strict=False):
        if source not in BACKFILL_TITLES:
            spans.append((at, at, ""))  # a live state ends a run
        elif spans and spans[-1][2] == source:
            spans[-1] = (spans[-1][0], at, source)
        else:
            spans.append((at, at, source))
    return [span for span in spans if span[2]]


def history_png(history: History, title: str) -> bytes:
    """Bias per cohort over time (one panel per ladder) and the smart-vs-retail spread;
    backfilled periods shaded, with a legend entry."""
    fig = Figure(figsize=(11, 8.6))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 2], "hspace": 0.22})
    times = history.times
    shown: set[str] = set()
    for first, last, source in backfilled_spans(history):
        # Half an hour either side, so that a single state still shows as a band.
        pad = dt.timedelta(minutes=30)
        for i, ax in enumerate(axes):
            label = BACKFILL_TITLES[source] if i == 2 and source not in shown else None
            ax.axvspan(first - pad, last + pad, color=BAND_COLOUR, alpha=0.6, lw=0, label=label)
        shown.add(source)
    for ax, ladder in zip(axes[:2], ("size", "pnl"), strict=True):
        cohorts = [c for c in COHORTS if c.ladder == ladder]
        palette = SIZE_LINE_COLOURS if ladder == "size" else PNL_LINE_COLOURS
        for i, cohort in enumerate(cohorts):
            # None becomes NaN: a cohort with no positions leaves a gap in its line.
            values = [math.nan if v is None else v for v in history.bias[cohort.segment_id]]
            ax.plot(
                times,
                values,
                color=palette[i],
                linestyle=LINE_STYLES[i],
                linewidth=1.5,
                label=COHORT_BY_ID[cohort.segment_id].name,
            )
        ax.axhline(0.5, color="#777777", linewidth=0.8, linestyle=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("bias (long share)")
        ax.set_title(LADDER_TITLES[ladder], fontsize=9, loc="left", fontweight="bold")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        ax.grid(alpha=0.25)
    ax = axes[2]
    spread = [math.nan if v is None else v for v in history.spread_pp]
    ax.axhline(0, color="#777777", linewidth=0.8)
    ax.fill_between(
        times,
        spread,
        0,
        where=[not math.isnan(v) and v >= 0 for v in spread],
        color=ramp_colour(0.8),
        alpha=0.6,
        interpolate=True,
    )
    ax.fill_between(
        times,
        spread,
        0,
        where=[not math.isnan(v) and v < 0 for v in spread],
        color=ramp_colour(0.2),
        alpha=0.6,
        interpolate=True,
    )
    ax.plot(times, spread, color="#222222", linewidth=1.2, label="every snapshot")
    if history.daily_spread:
        ax.plot(
            [t for t, _ in history.daily_spread],
            [math.nan if v is None else v for _, v in history.daily_spread],
            linestyle="none",
            marker="o",
            markersize=5,
            color="#222222",
            markerfacecolor="white",
            label="day close (daily mart)",
        )
    ax.set_ylabel("smart − retail (pp)")
    ax.set_title(
        "Smart money (Money Printer + Smart Money) minus retail (Shrimp + Fish), bias points",
        fontsize=9,
        loc="left",
        fontweight="bold",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("UTC")
    if not times:
        for a in axes:
            a.text(0.5, 0.5, "no snapshots in range", ha="center", transform=a.transAxes)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.8, top=0.92, bottom=0.07)
    return _png(fig, palette=True)
