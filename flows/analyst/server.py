"""Serve the reports folder (the heatmap reports and the docs page) on 127.0.0.1.

Plain ``http.server``: static files only, loopback only. ``/`` lists what there is to open.
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
MAX_LISTED = 200


def index_page(root: Path) -> bytes:
    """A small page linking the newest report, the docs and the dated reports."""
    links = []
    for name, label in (("latest.html", "newest report"), ("docs.html", "warehouse docs (dbt)")):
        if (root / name).exists():
            links.append(f'<li><a href="{name}">{label}</a></li>')
    dated = sorted(root.glob("*/*.html"), reverse=True)[:MAX_LISTED]
    items = "".join(
        f'<li><a href="{html.escape(p.relative_to(root).as_posix())}">'
        f"{html.escape(p.parent.name)} {html.escape(p.stem)}</a></li>"
        for p in dated
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,"><title>Reports</title></head><body>'
        f"<h1>Hyperliquid cohort positioning</h1><ul>{''.join(links) or '<li>nothing yet</li>'}"
        f"</ul><h2>Reports by snapshot</h2><ul>{items or '<li>none yet</li>'}</ul></body></html>"
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
