"""The heatmap report: one self-contained HTML page plus PNGs, from ``analytics.duckdb``.

The page works offline and opened from disk: styles and the one small script are inline,
charts are PNG data URIs, and a Content-Security-Policy forbids loading anything else. The
board is a real HTML table (one ``<td class="cell">`` per coin x cohort) for every window,
and a window switch shows one at a time.

The markup lives in Jinja2 templates under ``templates/`` (autoescaped: coin names come from
the API); this module shapes the data they show into the plain ``*View`` records below.

Written atomically to ``reports/latest.html`` (the newest snapshot) and to
``reports/<YYYY-MM-DD>/<snapshot_id>.html`` with the PNGs beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from flows import atomic
from flows.analyst import charts, data
from flows.analyst.data import Board, Divergence
from flows.analyst.scale import (
    ABSENT_COLOUR,
    CHANGE_CAP_PP,
    COHORTS,
    LADDER_TITLES,
    SHORT_TO_LONG,
    format_bias,
    format_pp,
    format_usd,
    is_ladder_start,
    text_colour,
)
from flows.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_COIN = "BTC"
DEFAULT_WINDOW = "all"  # HyperTracker's own default
HISTORY_DAYS = 30.0
LATEST_NAME = "latest.html"
PNG_KINDS = frozenset({"board", "history", "day-over-day"})
TITLE = "Hyperliquid cohort positioning"

TEMPLATES = Path(__file__).with_name("templates")
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Written by hand in this package, never from data: the only text the page takes unescaped.
CSS = Markup((TEMPLATES / "report.css").read_text(encoding="utf-8"))  # noqa: S704
SCRIPT = Markup((TEMPLATES / "report.js").read_text(encoding="utf-8"))  # noqa: S704


@dataclass
class RenderedReport:
    """A report in memory: the page and the PNG files that go beside it."""

    snapshot_id: str
    as_of: dt.datetime
    html: bytes
    pngs: dict[str, bytes]  # kind ("board", "history", "day-over-day") -> PNG, default window
    default_window: str
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- what the page shows


@dataclass(frozen=True)
class CellView:
    """One ``<td class="cell">``: its texts, its colour and its ``data-*`` values."""

    coin: str
    cohort: int
    classes: str
    title: str  # the tooltip, one line per fact
    first: str
    second: str
    background: str | None  # None: the grey comes from the ``absent`` class
    light_ink: bool  # white text on a dark background
    bias: str | None = None
    usd: str | None = None
    change_pp: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class LadderHead:
    title: str
    classes: str
    span: int


@dataclass(frozen=True)
class CohortHead:
    segment_id: int
    name: str
    classes: str


@dataclass(frozen=True)
class RowView:
    coin: str
    open_interest: str
    cells: list[CellView]


@dataclass(frozen=True)
class BoardView:
    kind: str
    window: str
    ladders: list[LadderHead]
    cohorts: list[CohortHead]
    rows: list[RowView]
    columns: int  # the coin column and one per cohort


@dataclass(frozen=True)
class LegendView:
    stops: Sequence[str]
    left: str
    mid: str
    right: str
    grey: str
    note: str


@dataclass(frozen=True)
class DivergenceRow:
    coin: str
    smart: str
    retail: str
    spread: str
    open_interest: str


@dataclass(frozen=True)
class ImageView:
    alt: str
    src: str  # a data: URI


@dataclass(frozen=True)
class WindowView:
    """Everything one window shows, in each section of the page."""

    window: str
    board: BoardView
    change: BoardView
    change_title: str
    history: ImageView
    divergence: list[DivergenceRow]


@dataclass(frozen=True)
class LinkView:
    href: str
    label: str


@dataclass(frozen=True)
class PageView:
    title: str
    coin: str
    when: str
    snapshot_id: str
    is_latest: bool
    published: str
    snapshot_count: str
    coin_count: int
    cohort_count: int
    day: str
    default_window: str
    windows: list[WindowView]
    bias_legend: LegendView
    change_legend: LegendView
    png_links: list[LinkView]
    docs_href: str


# --------------------------------------------------------------------------- the board


def _board_view(board: Board) -> BoardView:
    """One board's table: coins down, the cohorts across in ladder order."""
    ladders = []
    for ladder, group in itertools.groupby(COHORTS, key=lambda c: c.ladder):
        cohorts = list(group)
        start = " ladder-start" if is_ladder_start(cohorts[0].segment_id) else ""
        ladders.append(LadderHead(LADDER_TITLES[ladder], f"ladder{start}", len(cohorts)))
    heads = [
        CohortHead(
            c.segment_id,
            c.name,
            "cohort ladder-start" if is_ladder_start(c.segment_id) else "cohort",
        )
        for c in COHORTS
    ]
    rows = [
        RowView(
            coin,
            format_usd(board.open_interest.get(coin)),
            [_cell_view(board, coin, c.segment_id, c.name) for c in COHORTS],
        )
        for coin in board.coins
    ]
    return BoardView(board.kind, board.window, ladders, heads, rows, len(COHORTS) + 1)


def _cell_view(board: Board, coin: str, segment_id: int, cohort_name: str) -> CellView:
    colour, first, second = charts.cell_text(board, coin, segment_id)
    cell = board.cell(coin, segment_id)
    classes = ["cell"]
    if is_ladder_start(segment_id):
        classes.append("ladder-start")
    values: dict[str, str] = {}
    tip = [f"{coin} · {cohort_name}"]
    if cell is not None:
        tip.append(
            f"long {format_usd(cell.long_usd)} · short {format_usd(cell.short_usd)} · "
            f"{cell.positions:,} positions"
        )
        if cell.bias is not None:
            values["bias"] = f"{cell.bias:.4f}"
            tip.append(f"bias {cell.bias:.3f} (net {2 * cell.bias - 1:+.3f})")
        values["usd"] = f"{cell.total_usd:.0f}"
        if board.kind == "change":
            if cell.change_pp is not None:
                values["change_pp"] = f"{cell.change_pp:.2f}"
                tip.append(f"bias change {format_pp(cell.change_pp)} vs the previous close")
            if cell.status:
                values["status"] = cell.status
    else:
        tip.append("no row")
    background: str | None = None
    if colour == ABSENT_COLOUR:
        classes.append("absent")
        if board.kind == "bias":
            tip.append("no positions: no bias")
    else:
        background = colour
    return CellView(
        coin=coin,
        cohort=segment_id,
        classes=" ".join(classes),
        title="\n".join(tip),
        first=first,
        second=second,
        background=background,
        # Dark text is the table's own colour: only light-on-dark needs saying, per cell.
        light_ink=background is not None and text_colour(background) == "#ffffff",
        **values,
    )


def _legend_view(kind: str) -> LegendView:
    if kind == "bias":
        return LegendView(
            SHORT_TO_LONG,
            "0 · all short",
            "0.5 · neutral",
            "1 · all long",
            "no positions (no bias)",
            "bias = long share of the cohort's USD notional in the coin",
        )
    cap = f"{CHANGE_CAP_PP:.0f}"
    return LegendView(
        SHORT_TO_LONG,
        f"−{cap}pp · shorter",
        "no change",
        f"+{cap}pp · longer",
        "new, closed, no previous day or no bias",
        "change of bias since the previous day's close, in percentage points",
    )


def _divergence_rows(rows: list[Divergence]) -> list[DivergenceRow]:
    return [
        DivergenceRow(
            r.coin,
            format_bias(r.smart_bias),
            format_bias(r.retail_bias),
            format_pp(r.spread_pp),
            format_usd(r.open_interest),
        )
        for r in rows
    ]


def _image(png: bytes, alt: str) -> ImageView:
    return ImageView(alt, f"data:image/png;base64,{base64.b64encode(png).decode()}")


def _board_table(board: Board) -> str:
    """One board rendered alone: the table the page shows for it."""
    macro = _ENV.get_template("board.html.j2").module.board_table  # type: ignore[attr-defined]
    return str(macro(_board_view(board)))


# --------------------------------------------------------------------------- the page


def _page_view(
    *,
    coin: str,
    snapshot_id: str,
    as_of: dt.datetime,
    is_latest: bool,
    published_at: dt.datetime | None,
    snapshot_count: int | None,
    coin_count: int,
    default_window: str,
    boards: Mapping[str, Board],
    changes: Mapping[str, Board],
    history_pngs: Mapping[str, bytes],
    divergences: Mapping[str, list[Divergence]],
    png_kinds: Sequence[str],
    link_prefix: str,
) -> PageView:
    """What the page shows, for the windows of ``boards`` in their order."""
    windows = [
        WindowView(
            window=w,
            board=_board_view(boards[w]),
            change=_board_view(changes[w]),
            change_title=_change_title(changes[w], w, latest=is_latest),
            history=_image(history_pngs[w], f"{coin} bias per cohort, window {w}"),
            divergence=_divergence_rows(divergences[w]),
        )
        for w in boards
    ]
    return PageView(
        title=TITLE,
        coin=coin,
        when=f"{as_of:%Y-%m-%d %H:%M} UTC",
        snapshot_id=snapshot_id,
        is_latest=is_latest,
        published=f"{published_at:%Y-%m-%d %H:%M} UTC" if published_at else "unknown",
        snapshot_count="?" if snapshot_count is None else str(snapshot_count),
        coin_count=coin_count,
        cohort_count=len(COHORTS),
        day=f"{as_of:%Y-%m-%d}",
        default_window=default_window,
        windows=windows,
        bias_legend=_legend_view("bias"),
        change_legend=_legend_view("change"),
        png_links=[
            LinkView(
                link_prefix + _dated_png(as_of, snapshot_id, kind, default_window), f"{kind}.png"
            )
            for kind in png_kinds
        ],
        docs_href=f"{link_prefix}docs.html",
    )


def _page(view: PageView) -> bytes:
    page = _ENV.get_template("report.html.j2").render(page=view, css=CSS, script=SCRIPT)
    return page.encode("utf-8")


# --------------------------------------------------------------------------- render + write


def render_report(
    settings: Settings,
    *,
    coin: str = DEFAULT_COIN,
    snapshot_id: str | None = None,
    day: dt.date | None = None,
    top_n: int | None = None,
    history_days: float = HISTORY_DAYS,
    link_prefix: str = "",
    day_over_day_png: bool = False,
) -> RenderedReport:
    """Build the report in memory from the published analytics database (read-only).

    ``snapshot_id`` or ``day`` (its closing snapshot) picks the board; the default is the
    newest snapshot. ``link_prefix`` is the way from the page's folder to ``reports/``.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    top_n = top_n or settings.top_coins
    with data.connect(settings.analytics_db_path) as con:
        windows = data.windows_present(con)
        if not windows:
            raise data.ReportDataError("the analytics database holds no snapshot yet")
        if snapshot_id is None and day is not None:
            snapshot_id = data.day_close(con, day)
        if snapshot_id is None:
            snapshot_id, as_of = data.latest_snapshot(con)
        else:
            as_of = data.snapshot_time(con, snapshot_id)
        latest_id, _ = data.latest_snapshot(con)
        the_day = as_of.date()
        default_window = DEFAULT_WINDOW if DEFAULT_WINDOW in windows else windows[-1]
        try:
            coin = data.resolve_coin(con, coin, snapshot_id)
        except data.ReportDataError:
            if coin != DEFAULT_COIN:
                raise
            # No BTC (a tiny test market?): fall back to the biggest coin rather than fail.
            coin = data.board_coins(con, snapshot_id, windows, 1)[0][0]
        coins, oi = data.board_coins(con, snapshot_id, windows, top_n)
        boards = {w: data.load_board(con, snapshot_id, w, coins, oi) for w in windows}
        changes = {w: data.load_change_board(con, the_day, w, top_n) for w in windows}
        histories = data.load_histories(con, coin, windows, until=as_of, days=history_days)
        divergences = {
            w: data.load_divergence(con, the_day, w, changes[w].coins or coins) for w in windows
        }
        about = con.execute(
            "select published_at, snapshot_count from marts.about limit 1"
        ).fetchone()
    timings["read"] = time.perf_counter() - started

    t = time.perf_counter()
    when = f"{as_of:%Y-%m-%d %H:%M} UTC"
    history_pngs = {
        w: charts.history_png(
            histories[w],
            f"{coin}: bias per cohort, window {w}, last {history_days:g} days to {when}",
        )
        for w in windows
    }
    timings["history charts"] = time.perf_counter() - t
    t = time.perf_counter()
    dw = default_window
    pngs = {
        "board": charts.board_png(
            boards[dw], f"Cohort bias board · window {dw} · {when} · top {len(coins)} coins by OI"
        ),
        "history": history_pngs[dw],
    }
    if day_over_day_png:
        # Opt-in: a board PNG costs about a second of text rendering, and the page already
        # has the day-over-day board as a table.
        pngs["day-over-day"] = charts.board_png(
            changes[dw], _change_title(changes[dw], dw, latest=snapshot_id == latest_id)
        )
    timings["board charts"] = time.perf_counter() - t

    t = time.perf_counter()
    view = _page_view(
        coin=coin,
        snapshot_id=snapshot_id,
        as_of=as_of,
        is_latest=snapshot_id == latest_id,
        published_at=about[0] if about else None,
        snapshot_count=about[1] if about else None,
        coin_count=len(coins),
        default_window=dw,
        boards=boards,
        changes=changes,
        history_pngs=history_pngs,
        divergences=divergences,
        png_kinds=list(pngs),
        link_prefix=link_prefix,
    )
    page = _page(view)
    timings["html"] = time.perf_counter() - t
    return RenderedReport(snapshot_id, as_of, page, pngs, dw, timings)


def _change_title(board: Board, window: str, *, latest: bool) -> str:
    if board.day is None:
        return f"Day over day · window {window}: no day"
    so_far = " (so far)" if latest else ""
    return (
        f"Day over day · window {window} · close of {board.day:%Y-%m-%d}{so_far} "
        f"vs close of {board.day - dt.timedelta(days=1):%Y-%m-%d}"
    )


def _dated_png(as_of: dt.datetime, snapshot_id: str, kind: str, window: str) -> str:
    # Paths hold the date and snapshot id only: never a coin name (``xyz:GOLD`` has a colon).
    return f"{as_of:%Y-%m-%d}/{snapshot_id}-{kind}-{window}.png"


def write_report(
    settings: Settings,
    *,
    coin: str = DEFAULT_COIN,
    snapshot_id: str | None = None,
    day: dt.date | None = None,
    top_n: int | None = None,
    history_days: float = HISTORY_DAYS,
    out_dir: Path | None = None,
    day_over_day_png: bool = False,
) -> Path:
    """Write the report and its PNGs under ``settings.reports_dir``; return the page's path.

    Always writes the dated copy ``reports/<YYYY-MM-DD>/<snapshot_id>.html`` with its PNGs
    (``<snapshot_id>-board-<window>.png`` and ``-history-``, for the default window; also
    ``-day-over-day-`` with ``day_over_day_png``). For the newest snapshot it also replaces
    ``reports/latest.html`` and the ``latest-*.png`` files, and returns ``latest.html``; for
    an older one it returns the dated copy. Every file is written atomically: a reader sees
    the old or the new file. ``out_dir`` writes somewhere else than ``settings.reports_dir``
    (tests, one-off copies).
    """
    started = time.perf_counter()
    reports = out_dir or settings.reports_dir
    report = render_report(
        settings,
        coin=coin,
        snapshot_id=snapshot_id,
        day=day,
        top_n=top_n,
        history_days=history_days,
        link_prefix="../",
        day_over_day_png=day_over_day_png,
    )
    with data.connect(settings.analytics_db_path) as con:
        latest_id, _ = data.latest_snapshot(con)
    for kind, png in report.pngs.items():
        _publish(
            reports / _dated_png(report.as_of, report.snapshot_id, kind, report.default_window),
            png,
        )
    dated = reports / f"{report.as_of:%Y-%m-%d}" / f"{report.snapshot_id}.html"
    _publish(dated, report.html)
    target = dated
    if report.snapshot_id == latest_id:
        for kind, png in report.pngs.items():
            _publish(reports / f"latest-{kind}.png", png)
        for kind in PNG_KINDS.difference(report.pngs):
            # An opt-in image from an earlier run would be stale beside the new page.
            (reports / f"latest-{kind}.png").unlink(missing_ok=True)
        # The same page, its links seen from reports/ rather than reports/<date>/.
        _publish(reports / LATEST_NAME, _relink(report))
        target = reports / LATEST_NAME
    log.info(
        "report for %s written to %s in %.2fs (%s)",
        report.snapshot_id,
        target,
        time.perf_counter() - started,
        ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()),
    )
    return target


def _publish(final: Path, body: bytes) -> None:
    """Write ``body`` atomically, readable by all like any web page (temp files are 0600)."""

    def fill(tmp: Path) -> None:
        tmp.write_bytes(body)
        tmp.chmod(0o644)

    atomic.write_with(final, fill)


def _relink(report: RenderedReport) -> bytes:
    # Links in the dated copy start with ../ (reports/<date>/ -> reports/); from latest.html
    # they start in reports/ itself. Only our own href attributes carry the prefix.
    return report.html.replace(b'href="../', b'href="')


def prune_reports(reports_dir: Path, *, keep_days: int, today: dt.date | None = None) -> int:
    """Delete dated report folders older than ``keep_days``; return how many were removed.

    Only ``<YYYY-MM-DD>`` folders are touched; ``latest.html`` and ``docs.html`` never are.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    cutoff = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=keep_days)
    removed = 0
    for folder in sorted(reports_dir.glob("????-??-??")):
        try:
            day = dt.date.fromisoformat(folder.name)
        except ValueError:
            continue  # not ours
        if folder.is_dir() and day < cutoff:
            shutil.rmtree(folder)
            removed += 1
    return removed


def keep_day_close(reports_dir: Path) -> int:
    """In each dated folder keep only the newest snapshot's report: the day's close so far.

    A report is drawn after every published run; the close is what a dated copy is for.
    Snapshot ids sort as time. Returns the number of files removed.
    """
    removed = 0
    for folder in reports_dir.glob("????-??-??"):
        pages = sorted(folder.glob("*Z.html"))
        for old in pages[:-1]:
            for path in folder.glob(old.stem + "*"):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
