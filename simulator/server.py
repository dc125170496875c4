"""The simulated HyperTracker API: a real HTTP server on 127.0.0.1 serving :class:`Market`.

Production code talks to it exactly as to the real API (``base_url`` + Bearer token):

- ``GET /api/external/positions/heatmap?openedWithin=24h|7d|30d|all`` (default ``all``; any
  other value: 400 with a plain-string body; a ``coin`` parameter is ignored, as upstream);
- ``GET /api/external/segments``: the 16 cohorts;
- ``GET /api/external/hypertracker/state/status``: ``lastUpdate``, ``nextUpdate``,
  ``nextUpdateThreshold``;
- ``POST /info``: Hyperliquid's public info API (``metaAndAssetCtxs``, ``candleSnapshot``,
  ``fundingHistory``; :mod:`.info`), from the same market, at ``info_url``. It takes no
  token; the request log says whether a request carried the HyperTracker token anyway.
- the history endpoints (``/position-metrics/...``, ``/exports/coins/...``) and the
  pre-signed files the exports redirect to (:mod:`.history`).

A missing or wrong token gets 401 (HyperTracker's endpoints). With ``requests_per_minute``
set, HyperTracker's endpoints hold every token to a plan's rate (:class:`~.faults.RateLimit`:
any rolling minute; beyond it 429 with ``Retry-After`` and the documented body); the info
API and the pre-signed files are not counted. Every answer's ``Date``
header is the simulated clock, as a real server's is its own. Responses carry
Content-Length and connections are kept alive (HTTP/1.1), so pooled clients reuse them.

Tests, the demo and other processes steer it: in Python through :class:`SimulatedApi`
(clock, faults, request log), over HTTP through ``/__sim/`` (loopback only, no token; see
:mod:`.control`). Production code never calls ``/__sim/``.

The clock follows the wall clock (from an anchor) until it is set: after ``set_time``,
``advance`` or ``advance_to_next_state`` it stays where it was put.
"""

from __future__ import annotations

import contextlib
import email.utils
import hmac
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

import orjson

from simulator.faults import (
    DRIFT_KINDS,
    Fault,
    FaultPlan,
    RateLimit,
    bad_decimal,
    drift_heatmap,
    malformed,
    rate_limit_body,
    server_error_body,
)
from simulator.history import HistoryApi, route
from simulator.info import BadInfoRequest, answer
from simulator.market import DEFAULT_START, HISTORY_DAYS, WINDOWS, Market, iso_ms

logger = logging.getLogger(__name__)

API_PREFIX = "/api/external"
ENDPOINTS = {
    f"{API_PREFIX}/positions/heatmap": "heatmap",
    f"{API_PREFIX}/segments": "segments",
    f"{API_PREFIX}/hypertracker/state/status": "status",
    "/info": "info",
}
UNAUTHORIZED = b'{"error":"unauthorized","message":"Invalid or missing API token"}'
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
# With the wall clock far from the default start, the market starts two weeks before "now"
# so a first request never has to simulate months of history.
_DEFAULT_START_SPAN = timedelta(days=45)


class LoggedRequest(NamedTuple):
    """One API request as the server saw it (``status`` 0: dropped without a response)."""

    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass(frozen=True)
class _Record:
    method: str
    path: str
    query: dict[str, str]
    status: int
    fault: str | None
    at: str
    token_seen: bool = False  # the HyperTracker token appeared in the request, anywhere


def default_start(now: datetime) -> datetime:
    """The market's start for a clock at ``now``: 2026-11-01, or 14 days before ``now``."""
    if DEFAULT_START <= now <= DEFAULT_START + _DEFAULT_START_SPAN:
        return DEFAULT_START
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=14)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """An ISO-8601 timestamp (``Z`` or offset; naive = UTC) as an aware UTC datetime."""
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


class SimulatedApi:
    """The simulated API server: start it, point a client at ``base_url``, steer it.

    ``seed`` fixes the market; ``start`` its first state (default: see :func:`default_start`);
    ``now`` freezes the clock there (default: follow the wall clock); ``requests_per_minute``
    enforces a plan's rate (default: none; :attr:`rate_limit` can be set or replaced later).
    """

    def __init__(
        self,
        seed: int = 7,
        token: str = "sim-token",  # noqa: S107 (the simulator's own, not a secret)
        host: str = "127.0.0.1",
        port: int = 0,
        start: datetime | None = None,
        now: datetime | None = None,
        history_days: float = HISTORY_DAYS,
        requests_per_minute: int | None = None,
    ) -> None:
        self.seed = seed
        self.host = host
        self._token = token.encode()
        self._port = port
        initial = _utc(now) if now is not None else datetime.now(UTC)
        self.market = Market(
            seed,
            start=_utc(start) if start is not None else default_start(initial),
            history_days=history_days,
        )
        self.faults = FaultPlan()
        self.rate_limit = RateLimit(requests_per_minute) if requests_per_minute else None
        self._clock_lock = threading.Lock()
        self._frozen: datetime | None = initial if now is not None else None
        self._anchor = (initial, time.monotonic())
        self._speed = 1.0
        self._market_lock = threading.Lock()
        self._log: list[_Record] = []
        # A request is recorded after its response is sent; readers of the log wait for the
        # requests in flight, so a caller who has its response always finds it logged.
        self._log_lock = threading.Condition()
        self._in_flight = 0
        self._segments_body = orjson.dumps(Market.segments())
        self.history = HistoryApi(self)  # position-metrics, exports, pre-signed files
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def __repr__(self) -> str:  # never show the token
        where = self.base_url if self._httpd else "not started"
        return f"SimulatedApi(seed={self.seed}, {where})"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, warm: bool = False) -> Self:
        """Bind and serve in a background thread.

        ``warm`` computes the current state in the background, so that the first request of
        a long-running server is fast; tests that set the clock right away do without.
        """
        if self._httpd is not None:
            return self
        self._httpd = _Server((self.host, self._port), _Handler)
        self._httpd.api = self
        self._stopped.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sim-api-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if warm:
            threading.Thread(target=self._warm, name="sim-api-warm", daemon=True).start()
        logger.info("simulated HyperTracker API at %s", self.base_url)
        return self

    def _warm(self) -> None:
        try:
            k = self.state_index
            with self._market_lock:
                self.market.snapshot(k)
        except Exception:  # a warm-up failure resurfaces on the first request
            logger.debug("warm-up failed", exc_info=True)

    def stop(self) -> None:
        """Stop serving, close open connections and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.close_connections()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stopped.set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (Ctrl-C raises KeyboardInterrupt here)."""
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (once started)."""
        if self._httpd is None:
            raise RuntimeError("the simulated API is not running: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/external``: what ``HT_BASE_URL`` should be."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def info_url(self) -> str:
        """``http://127.0.0.1:PORT``: what ``HT_HYPERLIQUID_URL`` should be (``POST /info``)."""
        return f"http://{self.host}:{self.port}"

    # --- clock ----------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The simulated time (aware, UTC)."""
        with self._clock_lock:
            if self._frozen is not None:
                return self._frozen
            sim0, mono0 = self._anchor
            return sim0 + timedelta(seconds=(time.monotonic() - mono0) * self._speed)

    def set_time(self, when: datetime) -> datetime:
        """Freeze the clock at ``when`` (naive = UTC)."""
        when = _utc(when)
        with self._clock_lock:
            self._frozen = when
        return when

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and freeze it there."""
        return self.set_time(self.now + delta)

    def advance_to_next_state(self) -> datetime:
        """Freeze the clock at the moment the next state is published; returns that time."""
        k = self.state_index
        with self._market_lock:
            when = self.market.next_state_time(k)
        return self.set_time(when)

    def follow_wall_clock(self, speed: float = 1.0) -> None:
        """Unfreeze: from the current simulated time, run with the wall clock, ``speed``
        simulated seconds a second (a compressed clock for benchmarks)."""
        current = self.now
        with self._clock_lock:
            self._anchor = (current, time.monotonic())
            self._speed = speed
            self._frozen = None

    @property
    def frozen(self) -> bool:
        """True when the clock only moves when told to."""
        return self._frozen is not None

    @property
    def state_index(self) -> int:
        """The current state (0 while the clock is before the market's start)."""
        now = self.now
        with self._market_lock:
            return self.market.state_index_at(max(now, self.market.start))

    @property
    def last_update(self) -> datetime:
        """The current state's ``lastUpdate``."""
        k = self.state_index
        with self._market_lock:
            return self.market.state_time(k)

    # --- faults and the request log ---------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Queue a fault (see :mod:`.faults`); returns it, so its counters can be read."""
        self.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self.faults.clear()

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Every API request so far (``/__sim/`` calls excluded), oldest first."""
        with self._log_lock:
            self._log_lock.wait_for(lambda: self._in_flight == 0, timeout=10)
            return [LoggedRequest(r.method, r.path, r.query, r.status) for r in self._log]

    def clear_request_log(self) -> None:
        """Forget the requests logged so far."""
        with self._log_lock:
            self._log_lock.wait_for(lambda: self._in_flight == 0, timeout=10)
            self._log.clear()

    def info_requests(self) -> list[dict[str, Any]]:
        """The info API requests so far: their body's fields, status, fault, and whether
        the HyperTracker token appeared anywhere in them (it must not)."""
        with self._log_lock:
            self._log_lock.wait_for(lambda: self._in_flight == 0, timeout=10)
            return [r.__dict__ for r in self._log if r.path == "/info"]

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        fault: str | None,
        token_seen: bool = False,
    ) -> None:
        with self._log_lock:
            self._log.append(
                _Record(method, path, query, status, fault, iso_ms(self.now), token_seen)
            )
        logger.debug(
            "%s %s %s -> %s%s", method, path, query, status, f" [{fault}]" if fault else ""
        )

    # --- request handling -------------------------------------------------------------------

    def _handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if path.startswith("/__sim/") or path == "/__sim":
            self._handle_control(h, method, path)
            return
        with self._log_lock:
            self._in_flight += 1
        try:
            self._handle_api(h, method, path, query)
        finally:
            with self._log_lock:
                self._in_flight -= 1
                self._log_lock.notify_all()

    def _handle_api(self, h: _Handler, method: str, path: str, query: dict[str, str]) -> None:
        history = route(path, API_PREFIX)
        if self._over_rate_limit(h, method, path, query, history):
            return
        if history is not None:
            self.history.handle(h, method, path, query, *history)
            return
        endpoint = ENDPOINTS.get(path.rstrip("/"))
        if endpoint == "info":
            self._handle_info(h, method, path)
            return
        if endpoint is None:
            body = orjson.dumps({"error": "not_found", "message": f"Cannot {method} {path}"})
            _send(h, 404, body)
            self._record(method, path, query, 404, None)
            return
        if method != "GET":
            body = orjson.dumps(
                {"error": "method_not_allowed", "message": f"Cannot {method} {path}"}
            )
            _send(h, 405, body, headers=[("Allow", "GET")])
            self._record(method, path, query, 405, None)
            return
        if not self._authorized(h.headers.get("Authorization")):
            _send(h, 401, UNAUTHORIZED, headers=[("WWW-Authenticate", "Bearer")])
            self._record(method, path, query, 401, None)
            return
        window = None
        if endpoint == "heatmap":
            window = query.get("openedWithin", "all")
            if window not in WINDOWS:
                body = (
                    f"Invalid openedWithin value: {window!r}. Expected one of: {', '.join(WINDOWS)}"
                ).encode()
                _send(h, 400, body, TEXT)
                self._record(method, path, query, 400, None)
                return
        fault = self.faults.pick(endpoint, window)
        status = self._respond(h, endpoint, window, fault)
        self._record(method, path, query, status, fault.kind if fault else None)

    def _handle_info(self, h: _Handler, method: str, path: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        seen = self._token in raw or any(self._token in v.encode() for v in h.headers.values())
        if method != "POST":
            _send(h, 405, b'{"error":"method_not_allowed"}', headers=[("Allow", "POST")])
            self._record(method, path, {}, 405, None, seen)
            return
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            request = None
        fields = _info_fields(request)
        fault = self.faults.pick("info", None, fields.get("type"), fields.get("dex"))
        kind = fault.kind if fault else None
        if fault is not None and kind in ("slow", "rate_limit", "server_error", "drop"):
            status = self._respond(h, "info", None, fault)
        else:
            try:
                with self._market_lock:
                    body = answer(self.market, request, self.now)
            except BadInfoRequest as exc:
                _send(h, 422, str(exc).encode(), TEXT)
                self._record(method, path, fields, 422, None, seen)
                return
            if kind == "malformed_json":
                body = malformed(body)
            elif kind == "bad_decimal":
                body = bad_decimal(body)
            if kind == "truncate":
                _send_truncated(h, body)
            else:
                _send(h, 200, body)
            status = 200
        self._record(method, path, fields, status, kind, seen)

    def _over_rate_limit(
        self,
        h: _Handler,
        method: str,
        path: str,
        query: dict[str, str],
        history: tuple[str, dict[str, str]] | None,
    ) -> bool:
        """Answer 429 when a HyperTracker request of a valid token is over the plan's rate.

        Counted: every authorized request to a HyperTracker endpoint (a 400 too). Not counted:
        the info API, the pre-signed files, unknown paths, and requests without the token
        (they get their 401 as usual).
        """
        limit = self.rate_limit
        if limit is None:
            return False
        if history is not None:
            hypertracker = history[0] != "export_file"
        else:
            hypertracker = ENDPOINTS.get(path.rstrip("/")) not in (None, "info")
        if not hypertracker or not self._authorized(h.headers.get("Authorization")):
            return False
        retry_after = limit.admit()
        if retry_after is None:
            return False
        body = orjson.dumps(rate_limit_body(retry_after))
        _send(h, 429, body, headers=[("Retry-After", str(retry_after))])
        self._record(method, path, query, 429, None, token_seen=True)
        return True

    def _authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").partition(" ")
        # compare_digest: the time taken must not tell how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self._token
        )

    def _respond(self, h: _Handler, endpoint: str, window: str | None, fault: Fault | None) -> int:
        kind = fault.kind if fault else None
        if fault is not None and kind == "slow":
            time.sleep(fault.delay_s)
        if fault is not None and kind == "rate_limit":
            headers = [("Retry-After", str(fault.retry_after))] if fault.retry_after_header else []
            _send(h, 429, orjson.dumps(rate_limit_body(fault.retry_after)), headers=headers)
            return 429
        if fault is not None and kind == "server_error":
            body, content_type = server_error_body(fault.status)
            _send(h, fault.status, body, content_type)
            return fault.status
        if kind == "drop":
            h.close_connection = True  # the socket closes with nothing written
            return 0
        body = self._body(endpoint, window, kind if kind in DRIFT_KINDS else None)
        if kind == "malformed_json":
            body = malformed(body)
        if kind == "advance_state":
            # Before writing: the client's next request must already see the new state.
            self.advance_to_next_state()
        if kind == "truncate":
            _send_truncated(h, body)
            return 200
        _send(h, 200, body)
        return 200

    def _body(self, endpoint: str, window: str | None, drift: str | None) -> bytes:
        if endpoint == "segments":
            return self._segments_body
        k = self.state_index
        with self._market_lock:
            if endpoint == "status":
                return orjson.dumps(self.market.status(k))
            assert window is not None
            if drift is None:
                return self.market.heatmap_json(k, window)
            return orjson.dumps(drift_heatmap(drift, self.market.heatmap(k, window)))

    def _handle_control(self, h: _Handler, method: str, path: str) -> None:
        if h.client_address[0] not in _LOOPBACK:
            _send(h, 403, b'{"error":"forbidden","message":"simulator control is loopback-only"}')
            return
        try:
            data: Any = None
            length = int(h.headers.get("Content-Length") or 0)
            if length:
                data = orjson.loads(h.rfile.read(length))
            status, answer = self._control(method, path.rstrip("/"), data)
        except (ValueError, TypeError, KeyError) as exc:
            # orjson.JSONDecodeError is a ValueError.
            status, answer = 400, {"error": "bad_request", "message": str(exc)}
        _send(h, status, orjson.dumps(answer))

    def _control(self, method: str, path: str, data: Any) -> tuple[int, Any]:
        if path == "/__sim/clock":
            if method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                if "now" in data:
                    self.set_time(parse_iso(str(data["now"])))
                elif "advance_seconds" in data:
                    self.advance(timedelta(seconds=float(data["advance_seconds"])))
                elif data.get("next_state"):
                    self.advance_to_next_state()
                elif data.get("follow_wall_clock"):
                    self.follow_wall_clock(float(data.get("speed", 1.0)))
                else:
                    raise ValueError(
                        "expected now, advance_seconds, next_state or follow_wall_clock"
                    )
            elif method != "GET":
                return 405, {"error": "method_not_allowed"}
            return 200, self._clock_info()
        if path == "/__sim/faults":
            if method == "POST":
                items = data if isinstance(data, list) else [data]
                if not all(isinstance(item, dict) for item in items):
                    raise ValueError("expected a fault object or a list of them")
                for fault in [Fault.from_dict(item) for item in items]:
                    self.inject(fault)
                return 201, {"faults": [f.to_dict() for f in self.faults.pending()]}
            if method == "DELETE":
                self.clear_faults()
            elif method != "GET":
                return 405, {"error": "method_not_allowed"}
            return 200, {"faults": [f.to_dict() for f in self.faults.pending()]}
        if path == "/__sim/requests":
            if method == "DELETE":
                self.clear_request_log()
            elif method != "GET":
                return 405, {"error": "method_not_allowed"}
            with self._log_lock:
                self._log_lock.wait_for(lambda: self._in_flight == 0, timeout=10)
                records = [r.__dict__ for r in self._log]
            return 200, {"requests": records}
        return 404, {"error": "not_found", "message": f"no simulator control at {path}"}

    def _clock_info(self) -> dict[str, Any]:
        now = self.now
        k = self.state_index
        with self._market_lock:
            last = self.market.state_time(k)
            nxt = self.market.next_state_time(k)
        return {
            "now": iso_ms(now),
            "frozen": self.frozen,
            "state": k,
            "lastUpdate": iso_ms(last),
            "nextStateAt": iso_ms(nxt),
            "marketStart": iso_ms(self.market.start),
        }


def _info_fields(request: Any) -> dict[str, str]:
    """An info request's fields, flattened to text, for the request log."""
    if not isinstance(request, dict):
        return {}
    inner = request.get("req") if isinstance(request.get("req"), dict) else {}
    out = {"type": str(request.get("type"))}
    for key, value in {**request, **inner}.items():
        if key not in ("type", "req"):
            out[key] = str(value)
    return out


def _send_truncated(h: _Handler, body: bytes) -> None:
    """Promise the whole body, send half, close: a transfer cut short."""
    h.send_response(200)
    h.send_header("Content-Type", JSON)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body[: len(body) // 2])
    h.wfile.flush()
    h.close_connection = True


def _send(
    h: _Handler,
    status: int,
    body: bytes,
    content_type: str = JSON,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for name, value in headers or []:
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    api: SimulatedApi

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Close kept-alive connections, so clients see the server go away."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "HyperTrackerSim/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, alive=False)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header tells the simulated time: clients stamp answers with it.
        return email.utils.formatdate(self.server.api.now.timestamp(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        try:
            self.server.api._handle(self, method)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away
        except Exception:
            logger.exception("simulated API failed on %s %s", method, self.path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                _send(self, 500, b'{"error":"internal_server_error","message":"simulator bug"}')

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")
