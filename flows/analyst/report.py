"""The heatmap report: one self-contained, interactive HTML page and PNGs, from the warehouse.

The page works offline and opened from disk: one style sheet and one script, inline and
allowed by their SHA-256 hashes in a Content-Security-Policy that forbids everything else
(no network, no other script or style, no inline style attribute). Its data is one JSON
document in the page (:mod:`flows.analyst.payload`): every window's board at each held day's
close, every board coin's history and, when the warehouse has them, market data and the
flow/price split. ``report.js`` (plain JavaScript, no library) draws the boards as HTML tables
(sticky headers and coin column, sorting, a coin filter, a minimum notional), a day slider,
the history charts as SVG with a coin picker, and the divergence table.

The markup lives in Jinja2 templates under ``templates/`` (autoescaped); coin names reach the
page only inside the JSON document, with every ``<`` escaped.

Written atomically to ``reports/<YYYY-MM-DD>/<snapshot_id>.html`` with the PNGs beside it, and
to ``reports/latest.html`` when it shows the newest snapshot (never over a newer one).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from flows import atomic
from flows.analyst import charts, data, payload
from flows.analyst.data import Board
from flows.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_COIN = "BTC"
DEFAULT_WINDOW = "all"  # HyperTracker's own default
HISTORY_DAYS = 30.0
DAYS_HELD = 14  # daily closes on the day slider: two weeks of boards
HISTORY_POINTS = 180  # per series: hourly over a week, 4-hourly over a month
LATEST_NAME = "latest.html"
PNG_KINDS = frozenset({"board", "history", "day-over-day"})
TITLE = "Hyperliquid cohort positioning"

TEMPLATES = Path(__file__).with_name("templates")
# The newest signal events the page lists (`ht signals` and signal_events have them all).
SIGNALS_LISTED = 25
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


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


# The page's own style sheet and script, by hash: nothing else may run or style the page.
CSP = (
    f"default-src 'none'; img-src data:; style-src '{_sha256(CSS)}'; "
    f"script-src '{_sha256(SCRIPT)}'; base-uri 'none'; form-action 'none'"
)
SNAPSHOT_META = re.compile(rb'<meta name="ht-snapshot" content="([0-9TZ]+)">')


@dataclass
class RenderedReport:
    """A report in memory: the page and the PNG files that go beside it."""

    snapshot_id: str
    as_of: dt.datetime
    html: bytes
    pngs: dict[str, bytes]  # kind ("board", "history", "day-over-day") -> PNG, default window
    default_window: str
    coin: str = DEFAULT_COIN
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkView:
    href: str
    label: str


@dataclass(frozen=True)
class PageView:
    title: str
    snapshot_id: str
    when: str
    is_latest: bool
    published: str
    snapshot_count: str
    coin_count: int
    cohort_count: int
    day_count: int
    csp: str
    data_json: Markup  # payload.to_json: no "<" in it, safe in a data block
    png_links: list[LinkView]
    docs_href: str
    signals: list[data.SignalRow] | None = None  # None: the warehouse has no signal marts


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
    days_held: int = DAYS_HELD,
    link_prefix: str = "",
    day_over_day_png: bool = False,
) -> RenderedReport:
    """Build the report in memory from the published analytics database (read-only).

    ``snapshot_id`` or ``day`` (its closing snapshot) picks the board; the default is the
    newest snapshot. ``coin`` is the coin whose history the page (and the history PNG) shows
    first; the page holds every board coin's. ``link_prefix`` is the way from the page's
    folder to ``reports/``.
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
        if coin not in coins:
            coins = [*coins, coin]  # the coin asked for is on the page, even if small
        boards = {w: data.load_board(con, snapshot_id, w, coins, oi) for w in windows}
        has_market = data.has_relation(con, data.MARKET, payload.MARKET_COLUMNS) and data.has_rows(
            con, data.MARKET, "has_market and mark_price is not null"
        )
        has_flow = data.has_relation(con, data.FLOW_PRICE, payload.FLOW_COLUMNS) and data.has_rows(
            con, data.FLOW_PRICE, "net_flow_usd is not null"
        )
        days = data.held_days(con, the_day, days_held)
        if the_day not in days:
            days.append(the_day)
        held = payload.Held(
            windows=windows,
            default_window=default_window,
            default_coin=coin,
            coins=coins,
            snapshot_id=snapshot_id,
            as_of=as_of,
            is_latest=snapshot_id == latest_id,
            days=days,
            snapshot_boards=boards,
            day_cells=data.load_day_cells(con, days, windows, coins),
            day_oi=data.load_day_open_interest(
                con, days, coins, data.OI_WINDOW if data.OI_WINDOW in windows else windows[-1]
            ),
            divergence=data.load_day_divergence(con, days, windows, coins),
            history=data.load_history_grid(
                con,
                coins,
                windows,
                until=as_of,
                days=history_days,
                max_points=HISTORY_POINTS,
                market=has_market,
            ),
            market=(
                data.load_market_days(
                    con, days, coins, snapshot_id=snapshot_id, snapshot_day=the_day
                )
                if has_market
                else None
            ),
            flow_price=data.load_flow_price(con, days, windows, coins) if has_flow else None,
            notes={
                **({} if has_market else {"market": payload.MARKET_NOTE}),
                **({} if has_flow else {"flow": payload.FLOW_NOTE}),
            },
            day_sources=data.load_day_sources(con, days, windows),
            snapshot_source=data.snapshot_source(con, snapshot_id),
        )
        signals = (
            data.load_signals(con, until=as_of, limit=SIGNALS_LISTED)
            if data.has_relation(con, data.SIGNALS, data.SIGNAL_COLUMNS)
            else None
        )
        history = data.load_history(con, coin, default_window, until=as_of, days=history_days)
        change = data.load_change_board(con, the_day, default_window, top_n)
        about = con.execute(
            "select published_at, snapshot_count from marts.about limit 1"
        ).fetchone()
    timings["read"] = time.perf_counter() - started

    t = time.perf_counter()
    document = payload.to_json(payload.document(held))
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    when = f"{as_of:%Y-%m-%d %H:%M} UTC"
    dw = default_window
    pngs = {
        "board": charts.board_png(
            boards[dw], f"Cohort bias board · window {dw} · {when} · top {len(coins)} coins by OI"
        ),
        "history": charts.history_png(history, charts.history_title(history)),
    }
    if day_over_day_png:
        # Opt-in: a board PNG costs about a second of text rendering, and the page already
        # has the day-over-day board.
        pngs["day-over-day"] = charts.board_png(
            change, _change_title(change, dw, latest=snapshot_id == latest_id)
        )
    timings["charts"] = time.perf_counter() - t

    t = time.perf_counter()
    prefix = _png_prefix(snapshot_id, coin)
    view = PageView(
        title=TITLE,
        snapshot_id=snapshot_id,
        when=when,
        is_latest=snapshot_id == latest_id,
        published=f"{about[0]:%Y-%m-%d %H:%M} UTC" if about and about[0] else "unknown",
        snapshot_count="?" if not about or about[1] is None else str(about[1]),
        coin_count=len(coins),
        cohort_count=16,
        day_count=len(days),
        csp=CSP,
        data_json=Markup(document),  # noqa: S704 (payload.to_json escapes every "<")
        png_links=[
            LinkView(f"{link_prefix}{as_of:%Y-%m-%d}/{prefix}-{kind}-{dw}.png", f"{kind}.png")
            for kind in pngs
        ],
        docs_href=f"{link_prefix}docs.html",
        signals=signals,
    )
    page = _page(view)
    timings["html"] = time.perf_counter() - t
    return RenderedReport(snapshot_id, as_of, page, pngs, dw, coin, timings)


def _coin_slug(coin: str) -> str:
    # Paths never hold a coin name as it is (``xyz:GOLD`` has a colon): letters and digits,
    # the rest as hex, so two coins never share a file.
    return "".join(ch if ch.isascii() and ch.isalnum() else f"~{ord(ch):x}" for ch in coin)


def _png_prefix(snapshot_id: str, coin: str) -> str:
    """A report's file stem: the snapshot id, and the coin when it is not the default one.

    The page holds every coin; ``coin`` only picks the history shown first (and drawn in the
    history PNG), so a report for another coin is a file of its own, never over the default.
    """
    return snapshot_id if coin == DEFAULT_COIN else f"{snapshot_id}-coin-{_coin_slug(coin)}"


def _change_title(board: Board, window: str, *, latest: bool) -> str:
    if board.day is None:
        return f"Day over day · window {window}: no day"
    so_far = " (so far)" if latest else ""
    return (
        f"Day over day · window {window} · close of {board.day:%Y-%m-%d}{so_far} "
        f"vs close of {board.day - dt.timedelta(days=1):%Y-%m-%d}"
    )


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

    Always writes the dated copy ``reports/<YYYY-MM-DD>/<stem>.html`` with its PNGs
    (``<stem>-board-<window>.png`` and ``-history-``, for the default window; also
    ``-day-over-day-`` with ``day_over_day_png``); the stem is the snapshot id, with the coin
    when another than BTC is shown first, so no report ever overwrites another's. For the
    newest snapshot it also replaces ``reports/latest.html`` and the ``latest-*.png`` files
    (unless they already show a newer snapshot) and returns ``latest.html``; for an older one
    it returns the dated copy. Every file is written atomically: a reader sees the old or the
    new file. ``out_dir`` writes somewhere else than ``settings.reports_dir`` (tests).
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
    folder = reports / f"{report.as_of:%Y-%m-%d}"
    stem = _png_prefix(report.snapshot_id, report.coin)
    for kind, png in report.pngs.items():
        _publish(folder / f"{stem}-{kind}-{report.default_window}.png", png)
    dated = folder / f"{stem}.html"
    _publish(dated, report.html)
    target = dated
    if report.snapshot_id == latest_id:
        with _latest_lock(reports):
            if _shown_by_latest(reports) <= report.snapshot_id:
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


@contextlib.contextmanager
def _latest_lock(reports: Path) -> Iterator[None]:
    """One writer of ``latest.html`` at a time: the check for a newer one and the write are
    one step, so two reports finishing together never leave the older one as the newest."""
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / ".latest.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shown_by_latest(reports: Path) -> str:
    """The snapshot id ``latest.html`` shows now; ``""`` when none (or an older page)."""
    try:
        head = (reports / LATEST_NAME).read_bytes()[:4096]
    except FileNotFoundError:
        return ""
    found = SNAPSHOT_META.search(head)
    return found.group(1).decode() if found else ""


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
        # A snapshot's own page only: a coin page ends in Z.html too when the coin does.
        pages = sorted(folder.glob("????????T?????????Z.html"))
        for old in pages[:-1]:
            for path in folder.glob(old.stem + "*"):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
