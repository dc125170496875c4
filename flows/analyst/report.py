"""The heatmap report: one self-contained HTML page plus PNGs, from ``analytics.duckdb``.

The page works offline and opened from disk: styles and the one small script are inline,
charts are PNG data URIs, and a Content-Security-Policy forbids loading anything else. The
board is a real HTML table (one ``<td class="cell">`` per coin x cohort) for every window,
and a window switch shows one at a time.

Written atomically to ``reports/latest.html`` (the newest snapshot) and to
``reports/<YYYY-MM-DD>/<snapshot_id>.html`` with the PNGs beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class RenderedReport:
    """A report in memory: the page and the PNG files that go beside it."""

    snapshot_id: str
    as_of: dt.datetime
    html: bytes
    pngs: dict[str, bytes]  # kind ("board", "history", "day-over-day") -> PNG, default window
    default_window: str
    timings: dict[str, float] = field(default_factory=dict)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- the board


def _board_table(board: Board) -> str:
    """One board as an HTML table: coins down, 16 cohorts across in ladder order."""
    head_groups = [
        '<th class="corner" rowspan="2" scope="col">coin<small>open interest</small></th>'
    ]
    for ladder in ("size", "pnl"):
        start = " ladder-start" if ladder == "pnl" else ""
        head_groups.append(
            f'<th class="ladder{start}" colspan="8" scope="colgroup">'
            f"{_e(LADDER_TITLES[ladder])}</th>"
        )
    head_cohorts = [
        f'<th class="cohort{" ladder-start" if is_ladder_start(c.segment_id) else ""}" '
        f'scope="col" data-cohort="{c.segment_id}" title="segment {c.segment_id}">{_e(c.name)}</th>'
        for c in COHORTS
    ]
    body = []
    for coin in board.coins:
        cells = [
            f'<th class="coin" scope="row">{_e(coin)}'
            f"<small>{_e(format_usd(board.open_interest.get(coin)))}</small></th>"
        ]
        cells.extend(_cell(board, coin, c.segment_id, c.name) for c in COHORTS)
        body.append(f'<tr data-coin="{_e(coin)}">{"".join(cells)}</tr>')
    if not board.coins:
        body.append('<tr><td colspan="17" class="empty">no coins in this window</td></tr>')
    return (
        f'<table class="board" data-kind="{board.kind}" data-window="{_e(board.window)}">'
        f"<thead><tr>{''.join(head_groups)}</tr><tr>{''.join(head_cohorts)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cell(board: Board, coin: str, segment_id: int, cohort_name: str) -> str:
    colour, first, second = charts.cell_text(board, coin, segment_id)
    cell = board.cell(coin, segment_id)
    classes = ["cell"]
    if is_ladder_start(segment_id):
        classes.append("ladder-start")
    attrs = [f'data-coin="{_e(coin)}"', f'data-cohort="{segment_id}"']
    tip = [f"{coin} · {cohort_name}"]
    if cell is not None:
        tip.append(
            f"long {format_usd(cell.long_usd)} · short {format_usd(cell.short_usd)} · "
            f"{cell.positions:,} positions"
        )
        if cell.bias is not None:
            attrs.append(f'data-bias="{cell.bias:.4f}"')
            tip.append(f"bias {cell.bias:.3f} (net {2 * cell.bias - 1:+.3f})")
        attrs.append(f'data-usd="{cell.total_usd:.0f}"')
        if board.kind == "change":
            if cell.change_pp is not None:
                attrs.append(f'data-change-pp="{cell.change_pp:.2f}"')
                tip.append(f"bias change {format_pp(cell.change_pp)} vs the previous close")
            if cell.status:
                attrs.append(f'data-status="{cell.status}"')
    else:
        tip.append("no row")
    if colour == ABSENT_COLOUR:
        classes.append("absent")
        if board.kind == "bias":
            tip.append("no positions: no bias")
        style = ""
    else:
        ink = text_colour(colour)
        # Dark text is the table's own colour: only light-on-dark needs saying, per cell.
        style = f' style="background:{colour}{";color:#fff" if ink == "#ffffff" else ""}"'
    second_html = f"<span>{_e(second)}</span>" if second else ""
    return (
        f'<td class="{" ".join(classes)}" {" ".join(attrs)}{style} title="{_e(chr(10).join(tip))}">'
        f"<b>{_e(first)}</b>{second_html}</td>"
    )


def _legend(kind: str) -> str:
    stops = ", ".join(SHORT_TO_LONG)
    if kind == "bias":
        left, mid, right = "0 · all short", "0.5 · neutral", "1 · all long"
        note = "bias = long share of the cohort's USD notional in the coin"
        grey = "no positions (no bias)"
    else:
        cap = f"{CHANGE_CAP_PP:.0f}"
        left, mid, right = f"−{cap}pp · shorter", "no change", f"+{cap}pp · longer"
        note = "change of bias since the previous day's close, in percentage points"
        grey = "new, closed, no previous day or no bias"
    return (
        '<div class="legend">'
        f'<div class="ramp" style="background:linear-gradient(to right, {stops})"></div>'
        f'<div class="ticks"><span>{left}</span><span>{mid}</span><span>{right}</span></div>'
        f'<p><span class="swatch absent"></span> {grey} · {_e(note)}</p></div>'
    )


def _divergence_table(rows: list[Divergence], window: str) -> str:
    if not rows:
        return '<p class="empty">no coin where both smart money and retail hold positions</p>'
    body = "".join(
        f'<tr data-coin="{_e(r.coin)}"><th scope="row">{_e(r.coin)}</th>'
        f"<td>{format_bias(r.smart_bias)}</td><td>{format_bias(r.retail_bias)}</td>"
        f"<td>{_e(format_pp(r.spread_pp))}</td><td>{_e(format_usd(r.open_interest))}</td></tr>"
        for r in rows
    )
    return (
        '<table class="plain"><thead><tr><th scope="col">coin</th><th scope="col">smart bias</th>'
        '<th scope="col">retail bias</th><th scope="col">smart − retail</th>'
        f'<th scope="col">open interest</th></tr></thead><tbody>{body}</tbody></table>'
    )


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


# --------------------------------------------------------------------------- the page

CSS = """
:root{--ink:#1b1b1b;--muted:#5c5c5c;--rule:#d9d9d9}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1500px;padding:16px 20px 40px;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px}
p.meta,p.note{color:var(--muted);margin:2px 0 8px}
nav.windows{position:sticky;top:0;z-index:3;background:#fff;padding:8px 0;
border-bottom:1px solid var(--rule)}
nav.windows button{font:inherit;padding:4px 14px;margin-right:6px;border:1px solid #888;
background:#fff;border-radius:4px;cursor:pointer}
nav.windows button[aria-selected=true]{background:#1b1b1b;color:#fff;border-color:#1b1b1b}
.scroll{overflow-x:auto}
table.board{border-collapse:collapse;font-size:11px;margin:6px 0}
table.board th{font-weight:600;padding:3px 4px}
table.board thead th{background:#fff;text-align:center;vertical-align:bottom}
th.ladder{border-bottom:2px solid var(--ink);font-size:12px}
th.cohort{width:66px;max-width:66px;white-space:normal;line-height:1.15;font-size:10px}
th.corner,th.coin{text-align:right;white-space:nowrap;padding-right:8px}
th small{display:block;font-weight:400;color:var(--muted)}
td.cell{width:66px;height:34px;text-align:center;border:1px solid #fff;padding:1px 2px;
line-height:1.15;font-variant-numeric:tabular-nums;color:#111}
td.cell b{display:block;font-weight:600}td.cell span{display:block;font-size:10px;opacity:.9}
td.absent{background:repeating-linear-gradient(45deg,#c8c8c8 0 4px,#b9b9b9 4px 8px);color:#333}
.ladder-start{border-left:4px solid var(--ink)!important}
.legend{max-width:560px;margin:8px 0 4px;font-size:12px;color:var(--muted)}
.ramp{height:12px;border:1px solid #999}
.ticks{display:flex;justify-content:space-between}
.swatch{display:inline-block;width:14px;height:10px;vertical-align:middle;border:1px solid #999}
.swatch.absent{background:repeating-linear-gradient(45deg,#c8c8c8 0 3px,#b9b9b9 3px 6px)}
table.plain{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
table.plain th,table.plain td{padding:3px 10px;border-bottom:1px solid var(--rule);text-align:right}
table.plain th[scope=row]{text-align:left}
img{max-width:100%;height:auto}
footer{margin-top:32px;border-top:1px solid var(--rule);padding-top:8px;color:var(--muted);
font-size:12px}
"""

# Switches every [data-window] panel at once; the hash (#window=24h) makes a view linkable.
# Without JavaScript every window stays visible, one after another.
SCRIPT = """
(function(){
  var panels=document.querySelectorAll('.panel[data-window]');
  var buttons=document.querySelectorAll('nav.windows button[data-show]');
  function show(w){
    for(var i=0;i<panels.length;i++){panels[i].hidden=panels[i].getAttribute('data-window')!==w;}
    for(var j=0;j<buttons.length;j++){
      buttons[j].setAttribute('aria-selected',String(buttons[j].getAttribute('data-show')===w));}
    document.body.setAttribute('data-window',w);
  }
  for(var k=0;k<buttons.length;k++){buttons[k].addEventListener('click',function(){
    var w=this.getAttribute('data-show');show(w);
    if(window.history&&history.replaceState){history.replaceState(null,'','#window='+w);}});}
  function fromHash(){
    var m=/window=([0-9a-z]+)/.exec(location.hash);
    var ok=m&&document.querySelector('nav.windows button[data-show="'+m[1]+'"]');
    show(ok?m[1]:document.body.getAttribute('data-default-window'));
  }
  window.addEventListener('hashchange',fromHash);
  fromHash();
})();
"""

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _page(
    *,
    title: str,
    meta: str,
    windows: list[str],
    default_window: str,
    sections: list[str],
    footer: str,
) -> bytes:
    buttons = "".join(
        f'<button type="button" data-show="{_e(w)}" '
        f'aria-selected="{str(w == default_window).lower()}">{_e(w)}</button>'
        for w in windows
    )
    page = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f'<body data-default-window="{_e(default_window)}">'
        f'<header><h1>{_e(title)}</h1><p class="meta">{meta}</p></header>'
        f'<nav class="windows" aria-label="position-age window">'
        f'<span class="label">Window (positions opened within): </span>{buttons}</nav>'
        f"{''.join(sections)}<footer>{footer}</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
    return page.encode("utf-8")


def _window_panels(windows: list[str], render: dict[str, str]) -> str:
    return "".join(
        f'<div class="panel" data-window="{_e(w)}"><h3 class="window-title">window {_e(w)}</h3>'
        f"{render[w]}</div>"
        for w in windows
    )


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
    is_latest = snapshot_id == latest_id
    published = f"{about[0]:%Y-%m-%d %H:%M} UTC" if about and about[0] else "unknown"
    meta = (
        f"Snapshot <b>{_e(when)}</b> (<code>{_e(snapshot_id)}</code>)"
        f"{' · the newest' if is_latest else ' · not the newest'} · "
        f"warehouse published {_e(published)}, {about[1] if about else '?'} snapshots · "
        f"top {len(coins)} coins by open interest (window all), 16 cohorts"
    )
    board_html = _window_panels(
        windows, {w: f'<div class="scroll">{_board_table(boards[w])}</div>' for w in windows}
    )
    change_html = _window_panels(
        windows,
        {
            w: f'<p class="note">{_e(_change_title(changes[w], w, latest=is_latest))}</p>'
            f'<div class="scroll">{_board_table(changes[w])}</div>'
            for w in windows
        },
    )
    history_html = _window_panels(
        windows, {w: _img(history_pngs[w], f"{coin} bias per cohort, window {w}") for w in windows}
    )
    divergence_html = _window_panels(
        windows, {w: _divergence_table(divergences[w], w) for w in windows}
    )
    sections = [
        '<section id="board"><h2>Cohort bias board</h2>'
        '<p class="note">Each cell: the cohort\'s bias (long share of its USD notional, 0.5 = '
        "neutral) and its notional in the coin. Left of the bold line the size ladder "
        "(wallets by perp equity, smallest first); right of it the PnL ladder (wallets by "
        "all-time PnL, biggest winners first). Each ladder holds every position once.</p>"
        f"{_legend('bias')}{board_html}</section>",
        '<section id="day-over-day"><h2>Day over day</h2>'
        '<p class="note">Bias change since the previous day\'s close, in percentage points '
        "(second line: the change of the cohort's notional). A day after a gap in the history "
        "has no change (never a zero); a coin listed or delisted since shows new or closed.</p>"
        f"{_legend('change')}{change_html}</section>",
        f'<section id="history"><h2>Cohort history: {_e(coin)}</h2>'
        '<p class="note">Bias per cohort at every snapshot (a gap = the cohort held nothing), '
        "and the spread between smart money (Money Printer + Smart Money) and retail "
        "(Shrimp + Fish); the dots are the day closes of the mart "
        "<code>smart_retail_divergence_daily</code>.</p>"
        f"{history_html}</section>",
        '<section id="divergence"><h2>Where smart money and retail disagree most</h2>'
        f'<p class="note">At the close of {the_day:%Y-%m-%d}, among the board\'s coins; '
        "bias points = (smart bias − retail bias) × 100.</p>"
        f"{divergence_html}</section>",
    ]
    png_links = " · ".join(
        f'<a href="{_e(link_prefix)}{_e(_dated_png(as_of, snapshot_id, kind, dw))}">{kind}.png</a>'
        for kind in pngs
    )
    footer = (
        f'PNG images (window {dw}): {png_links} · <a href="{_e(link_prefix)}docs.html">'
        "warehouse docs (dbt)</a> · query it yourself: "
        "<code>duckdb -readonly data/warehouse/analytics.duckdb</code>. "
        "Source: HyperTracker positions heatmap, snapshots kept by this warehouse."
    )
    page = _page(
        title="Hyperliquid cohort positioning",
        meta=meta,
        windows=windows,
        default_window=dw,
        sections=sections,
        footer=footer,
    )
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

    A report is about 2 MB (page and PNGs), so one every 15 minutes is about 190 MB a day.
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

    A scheduled run writes a report every 15-30 minutes; kept whole that is ~190 MB a day,
    while the close is what a dated copy is for. Snapshot ids sort as time. Returns the
    number of files removed.
    """
    removed = 0
    for folder in reports_dir.glob("????-??-??"):
        pages = sorted(folder.glob("*Z.html"))
        for old in pages[:-1]:
            for path in folder.glob(old.stem + "*"):
                path.unlink(missing_ok=True)
                removed += 1
    return removed
