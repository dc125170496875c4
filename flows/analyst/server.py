"""Serve the reports folder (the heatmap reports and the docs page) on 127.0.0.1.

Plain ``http.server``: static files only, loopback only. ``/`` lists what there is to open:
the newest report, the docs and every dated report.
"""

from __future__ import annotations

import contextlib
import functools
import html
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flows.settings import Settings

HOST = "127.0.0.1"  # never another interface: the reports are for this machine's user
STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
p.lead { color: #57606a; margin-top: 0; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
ul.main { list-style: none; padding: 0; display: flex; gap: 1rem; flex-wrap: wrap; }
ul.main a { display: block; padding: .75rem 1rem; border: 1px solid #d0d7de;
            border-radius: 6px; background: #f6f8fa; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #d8dee4; }
th { font-weight: 600; background: #f6f8fa; } td.day { white-space: nowrap; color: #57606a; }
.png a { margin-right: .6rem; font-size: .9em; }
"""


def _snapshot_label(stem: str) -> str:
    # 20261124T153000000Z -> 15:30:00 UTC; anything else as it is.
    if len(stem) == 19 and stem[8] == "T" and stem.endswith("Z"):
        return f"{stem[9:11]}:{stem[11:13]}:{stem[13:15]} UTC"
    return stem


def index_page(root: Path) -> bytes:
    """A page linking the newest report, the docs and every dated report with its PNGs."""
    links = []
    for name, label in (
        ("latest.html", "Newest report"),
        ("docs.html", "Warehouse docs (dbt)"),
        ("latest-board.png", "Newest board (PNG)"),
        ("latest-history.png", "Newest history (PNG)"),
    ):
        if (root / name).exists():
            links.append(f'<li><a href="{name}">{label}</a></li>')
    rows = []
    for page in sorted(root.glob("*/*.html"), reverse=True):
        href = html.escape(page.relative_to(root).as_posix())
        pngs = " ".join(
            f'<a href="{html.escape(png.relative_to(root).as_posix())}">'
            f"{html.escape(png.stem.removeprefix(page.stem + '-'))}</a>"
            for png in sorted(page.parent.glob(f"{page.stem}-*.png"))
        )
        rows.append(
            f'<tr><td class="day">{html.escape(page.parent.name)}</td>'
            f'<td><a href="{href}">{html.escape(_snapshot_label(page.stem))}</a></td>'
            f'<td class="png">{pngs}</td></tr>'
        )
    table = (
        f"<table><tr><th>day</th><th>snapshot (close)</th><th>PNGs</th></tr>{''.join(rows)}</table>"
        if rows
        else "<p>none yet: <code>ht report</code> writes one</p>"
    )
    count = f"{len(rows)} report{'s' if len(rows) != 1 else ''}"
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,"><title>Hyperliquid cohort positioning</title>'
        f"<style>{STYLE}</style></head><body>"
        "<h1>Hyperliquid cohort positioning</h1>"
        '<p class="lead">The heatmap reports and the warehouse docs, served from this '
        "machine.</p>"
        f'<ul class="main">{"".join(links) or "<li>nothing yet</li>"}</ul>'
        f"<h2>Every report ({count}), newest first</h2>{table}</body></html>"
    )
    return page.encode("utf-8")


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/", "/index.html") and not (Path(self.directory) / "index.html").exists():
            self._send(index_page(Path(self.directory)), "text/html; charset=utf-8")
            return
        if self.path == "/favicon.ico":
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()
            return
        super().do_GET()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self) -> None:
        # Reports are replaced every run: never let the browser show a stale one.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: a request log per file would drown the console


def make_server(root: Path, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for ``root`` on 127.0.0.1 (``port`` 0 = any free port), not started."""
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Handler, directory=str(root))
    return ThreadingHTTPServer((HOST, port), handler)


@contextlib.contextmanager
def running_site(root: Path, port: int = 0) -> Iterator[str]:
    """Serve ``root`` in a background thread for the block; yields the base URL."""
    server = make_server(root, port)
    thread = threading.Thread(target=server.serve_forever, name="report-site", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_site(settings: Settings, port: int = 8000) -> None:
    """Serve ``settings.reports_dir`` (reports and docs) on 127.0.0.1 until Ctrl-C."""
    server = make_server(settings.reports_dir, port)
    url = f"http://{HOST}:{server.server_address[1]}/"
    print(f"serving {settings.reports_dir} at {url}: latest.html, docs.html (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
