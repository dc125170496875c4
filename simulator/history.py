"""HyperTracker's history endpoints, simulated from the same :class:`~.market.Market`.

Served under the API prefix, with the Bearer token (see
``/work/shared/reference/history-endpoints.md``):

- ``GET /position-metrics/coin/{coin}/segment/{segmentId}?start=&end=&limit=&nextCursor=&
  positionRecencyTimeframe=``: one row per state (newest first) for one coin, cohort and
  window; ``nextCursor`` pages back in time, ``limit`` 1..1000 (default 1000);
- ``GET /exports/coins/{coin}/segment-metrics`` (``-24h``, ``-7d``, ``-30d``): 302 to a
  pre-signed file on this same server (``/files/exports/<key>``), valid
  :attr:`HistoryApi.url_ttl_s` seconds of wall time, that holds every cohort's points
  (the states in force at each 00:00 and 12:00 UTC of the last 7 days, plus the latest).

Every number is the heatmap's: a row of state ``k`` carries the segment the heatmap of
state ``k`` lists (``totalPositionValue`` is its ``totalValue``, the same float sum), so a
state rebuilt from history equals the heatmap up to the bias's rounding and the float
subtraction that gives the short side back. What the simulator had to choose where the
reference is unsure, so that clients meet the awkward case:

- ``createdAt`` is *not* ``lastUpdate``: rows are written while a refresh runs, so each row
  is stamped up to :data:`WRITE_SPREAD_MS` before its state's ``lastUpdate``;
- a cohort with no position in a state has no row (as the heatmap leaves it out);
- history starts at :data:`HISTORY_START` per window, or at the market's first state if
  later (the simulated market has nothing before it).

The pre-signed file takes no token: the request log records whether one arrived anyway
(``token_seen``, as for the info API), and :meth:`HistoryApi.file_requests` lists them.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import numpy as np
import orjson

from flows.cohorts import COHORTS
from flows.hypertracker.history import HISTORY_START  # the reference's dates, shared
from simulator.market import WINDOWS, iso_ms, segment_json

if TYPE_CHECKING:
    from simulator.server import SimulatedApi, _Handler

MAX_LIMIT: Final = 1000
WRITE_SPREAD_MS: Final = 20_000  # a refresh writes its rows over up to 20 s before lastUpdate
EXPORT_DAYS: Final = 7
EXPORT_SPACING: Final = timedelta(hours=12)
URL_TTL_S: Final = 30.0
EXPORT_COLUMNS: Final = (
    "positionCount",
    "positionCountLong",
    "totalPositionValue",
    "totalPositionValueLong",
    "bias",
    "timestamp",
)
SEGMENT_IDS: Final = tuple(sorted(c.segment_id for c in COHORTS))
_COINS_CACHED: Final = 8  # coins whose per-state rows are kept (a backfill goes coin by coin)
# States whose rows of every coin are kept: an export reads the same ~15 states for each coin
# in turn, and one emission gives every coin's rows (the market caches only a few states).
_STATES_CACHED: Final = 32

_POSITION_METRICS = re.compile(r"/position-metrics/coin/(?P<coin>[^/]+)/segment/(?P<seg>[^/]+)")
_EXPORT = re.compile(r"/exports/coins/(?P<coin>[^/]+)/segment-metrics(?:-(?P<window>24h|7d|30d))?")
FILES_PREFIX: Final = "/files/exports/"
_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
_NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)


class BadQuery(ValueError):
    """A history request the real API would refuse with 400."""


@dataclass(frozen=True)
class _File:
    body: bytes
    signature: str
    expires_at: float  # time.monotonic()


def route(path: str, prefix: str) -> tuple[str, dict[str, str]] | None:
    """(endpoint, path parameters) when ``path`` is a history endpoint or a pre-signed file."""
    if path.startswith(FILES_PREFIX):
        return "export_file", {"key": path[len(FILES_PREFIX) :]}
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :].rstrip("/")
    if m := _POSITION_METRICS.fullmatch(rest):
        return "position_metrics", {"coin": unquote(m["coin"]), "segment": unquote(m["seg"])}
    if m := _EXPORT.fullmatch(rest):
        return "segment_metrics_export", {
            "coin": unquote(m["coin"]),
            "window": m["window"] or "all",
        }
    return None


class HistoryApi:
    """The history endpoints of one :class:`~.server.SimulatedApi` (it routes to :meth:`handle`)."""

    def __init__(self, api: SimulatedApi) -> None:
        self.api = api
        self.url_ttl_s = URL_TTL_S
        self._files: dict[str, _File] = {}
        self._files_lock = threading.Lock()
        # coin index -> state -> (window, segment, [count long, count short, value long,
        # value short, mark]): one coin's rows per state, so the 64 requests of a coin emit
        # each state once.
        self._rows: OrderedDict[int, dict[int, np.ndarray]] = OrderedDict()
        # state -> (coin, window, segment, [...]): every coin's rows of one state.
        self._states: OrderedDict[int, np.ndarray] = OrderedDict()
        self._coin_index: dict[str, int] | None = None

    # --- dispatch ---------------------------------------------------------------------------

    def handle(
        self,
        h: _Handler,
        method: str,
        path: str,
        query: dict[str, str],
        endpoint: str,
        params: dict[str, str],
    ) -> None:
        # Imported here: simulator.server imports this module.
        from simulator.server import TEXT, UNAUTHORIZED, _send, _send_truncated

        api = self.api
        seen = api._token in h.path.encode() or any(
            api._token in v.encode() for v in h.headers.values()
        )
        if method != "GET":
            _send(h, 405, b'{"error":"method_not_allowed"}', headers=[("Allow", "GET")])
            api._record(method, path, query, 405, None, seen)
            return
        if endpoint != "export_file" and not api._authorized(h.headers.get("Authorization")):
            _send(h, 401, UNAUTHORIZED, headers=[("WWW-Authenticate", "Bearer")])
            api._record(method, path, query, 401, None, seen)
            return
        window = params.get("window") or query.get("positionRecencyTimeframe", "all")
        fault = api.faults.pick(endpoint, window if window in WINDOWS else None)
        kind = fault.kind if fault else None
        if fault is not None and kind in ("rate_limit", "server_error", "drop"):
            api._record(method, path, query, api._respond(h, endpoint, None, fault), kind, seen)
            return
        if fault is not None and kind == "slow":
            time.sleep(fault.delay_s)
        try:
            status, body, content_type, headers = self._answer(endpoint, params, query)
        except BadQuery as exc:
            _send(h, 400, str(exc).encode(), TEXT)
            api._record(method, path, query, 400, kind, seen)
            return
        if kind == "malformed_json" and status == 200:
            body = body[: max(1, len(body) // 2)]
        if kind == "truncate" and status == 200:
            _send_truncated(h, body)
        else:
            _send(h, status, body, content_type, headers)
        api._record(method, path, query, status, kind, seen)

    def file_requests(self) -> list[dict[str, Any]]:
        """Requests for pre-signed files: status, and whether the token came along (it must not)."""
        with self.api._log_lock:
            self.api._log_lock.wait_for(lambda: self.api._in_flight == 0, timeout=10)
            return [r.__dict__ for r in self.api._log if r.path.startswith(FILES_PREFIX)]

    def _answer(
        self, endpoint: str, params: dict[str, str], query: dict[str, str]
    ) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        from simulator.server import JSON

        if endpoint == "export_file":
            return self._file(params["key"], query)
        coin = params["coin"]
        index = self._coins().get(coin)
        if index is None:
            body = orjson.dumps({"error": "not_found", "message": f"Unknown coin {coin!r}"})
            return 404, body, JSON, []
        if endpoint == "position_metrics":
            return 200, self._position_metrics(index, params["segment"], query), JSON, []
        key = self._export(index, params["window"])
        return 302, b"", JSON, [("Location", key)]

    # --- position-metrics ---------------------------------------------------------------------

    def _position_metrics(self, coin: int, segment: str, query: dict[str, str]) -> bytes:
        window = query.get("positionRecencyTimeframe", "all")
        if window not in WINDOWS:
            raise BadQuery(
                f"Invalid positionRecencyTimeframe: {window!r}. "
                f"Expected one of: {', '.join(WINDOWS)}"
            )
        if not segment.isdigit() or int(segment) not in SEGMENT_IDS:
            raise BadQuery(f"Invalid segmentId: {segment!r}")
        seg = int(segment)
        if "start" not in query:
            raise BadQuery("start is required (ISO-8601)")
        start, end = _time(query, "start"), _time(query, "end") if query.get("end") else None
        limit = _limit(query.get("limit"))
        now = self.api.now
        end = min(end, now) if end is not None else now
        m = self.api.market
        first = max(start, HISTORY_START[window], m.start)
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        with self.api._market_lock:
            if first <= end:
                k_lo, k_hi = m.state_index_at(first), m.state_index_at(end)
                if query.get("nextCursor"):
                    k_hi = min(k_hi, _decode_cursor(query["nextCursor"]))
                k_page = max(k_lo, k_hi - limit + 1)
                for k in range(k_hi, k_page - 1, -1):
                    row = self._metric_row(coin, seg, window, self._state_rows(coin, k), k)
                    if row is not None and first <= _created(row) <= end:
                        rows.append(row)
                if k_page > k_lo:
                    cursor = _encode_cursor(k_page - 1)
        return orjson.dumps({"metrics": rows, "nextCursor": cursor})

    def _metric_row(
        self, coin: int, seg: int, window: str, state: np.ndarray, k: int
    ) -> dict[str, Any] | None:
        w, j = WINDOWS.index(window), SEGMENT_IDS.index(seg)
        nl, ns, vl, vs, mark = (float(v) for v in state[w, j])
        if nl + ns == 0:
            return None  # no position, no row (as the heatmap leaves the cohort out)
        tv = vl + vs  # the heatmap's totalValue: the same float sum
        m = self.api.market
        # Never before the market's first state: it has no history before it.
        created = max(m.state_time(k) - timedelta(milliseconds=_spread_ms(k, coin, seg)), m.start)
        return {
            "createdAt": iso_ms(created),
            "coin": m.coin_names[coin],
            "segmentId": seg,
            "positionCount": int(nl + ns),
            "positionCountLong": int(nl),
            "totalPositionValue": tv,
            "totalPositionValueLong": vl,
            "totalPositionSize": tv / mark,
            "totalPositionSizeLong": vl / mark,
            # Not in the heatmap; plausible magnitudes so a parser meets every field.
            "totalFunding": round(-(vl - vs) * 1e-4, 5),
            "totalUnrealizedPnl": round((vl - vs) * 0.01, 5),
        }

    # --- the export ---------------------------------------------------------------------------

    def _export(self, coin: int, window: str) -> str:
        m = self.api.market
        now = self.api.now
        with self.api._market_lock:
            first = max(HISTORY_START[window], m.start)
            latest = m.state_index_at(max(now, m.start))
            boundary = now.replace(hour=now.hour // 12 * 12, minute=0, second=0, microsecond=0)
            moments = [boundary - i * EXPORT_SPACING for i in range(2 * EXPORT_DAYS)]
            states = sorted({m.state_index_at(t) for t in moments if t >= first} | {latest})
            data = []
            for seg in SEGMENT_IDS:
                points = []
                for k in states:
                    row = self._metric_row(coin, seg, window, self._state_rows(coin, k), k)
                    if row is None:
                        continue
                    tv, vl = row["totalPositionValue"], row["totalPositionValueLong"]
                    points.append(
                        [row["positionCount"], row["positionCountLong"], tv, vl,
                         round(vl / tv, 3), row["createdAt"]]
                    )  # fmt: skip
                cohort = next(c for c in COHORTS if c.segment_id == seg)
                data.append(
                    {
                        "segment": segment_json(cohort),
                        "metrics": {"columns": list(EXPORT_COLUMNS), "data": points},
                    }
                )
            body = orjson.dumps({"coin": m.coin_names[coin], "data": data})
        key = secrets.token_urlsafe(12)
        signature = secrets.token_hex(16)
        with self._files_lock:
            clock = time.monotonic()
            self._files = {k: f for k, f in self._files.items() if f.expires_at > clock}
            self._files[key] = _File(body, signature, clock + self.url_ttl_s)
        api = self.api
        return (
            f"http://{api.host}:{api.port}{FILES_PREFIX}{key}"
            f"?X-Amz-Expires={self.url_ttl_s:g}&X-Amz-Signature={signature}"
        )

    def _file(
        self, key: str, query: dict[str, str]
    ) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        xml = "application/xml"
        with self._files_lock:
            file = self._files.get(key)
        if file is None or not hmac.compare_digest(
            query.get("X-Amz-Signature", ""), file.signature
        ):
            return 404, _NO_SUCH_KEY, xml, []
        if time.monotonic() >= file.expires_at:
            return 403, _EXPIRED, xml, []
        return 200, file.body, "application/json", []

    # --- the market, one coin at a time --------------------------------------------------------

    def _coins(self) -> dict[str, int]:
        if self._coin_index is None:
            self._coin_index = {name: i for i, name in enumerate(self.api.market.coin_names)}
        return self._coin_index

    def _state_rows(self, coin: int, k: int) -> np.ndarray:
        """(window, segment, [nl, ns, vl, vs, mark]) of one coin at state ``k`` (cached)."""
        per_coin = self._rows.get(coin)
        if per_coin is None:
            per_coin = self._rows[coin] = {}
            while len(self._rows) > _COINS_CACHED:
                self._rows.popitem(last=False)
        self._rows.move_to_end(coin)
        if k not in per_coin:
            per_coin[k] = self._extract(coin, k)
        return per_coin[k]

    def _extract(self, coin: int, k: int) -> np.ndarray:
        """One coin's rows at state ``k``: a copy, so the state's array can be dropped."""
        rows = self._states.get(k)
        if rows is None:
            rows = self._states[k] = self._extract_state(k)
            while len(self._states) > _STATES_CACHED:
                self._states.popitem(last=False)
        self._states.move_to_end(k)
        return rows[coin].copy()

    def _extract_state(self, k: int) -> np.ndarray:
        m = self.api.market
        index = self._coins()
        segment_index = {seg: j for j, seg in enumerate(SEGMENT_IDS)}
        out = np.zeros((m.n_coins, len(WINDOWS), len(SEGMENT_IDS), 5))
        out[:, :, :, 4] = m.prices.marks_at(m.ms_of(m.state_time(k)))[:, None, None]
        for w, window in enumerate(WINDOWS):
            for row in m.heatmap(k, window):
                i = index[row["coin"]]
                for seg in row["segments"]:
                    out[i, w, segment_index[seg["segmentId"]], :4] = (
                        seg["countLong"],
                        seg["countShort"],
                        seg["totalLongValue"],
                        seg["totalShortValue"],
                    )
        return out


def _spread_ms(k: int, coin: int, seg: int) -> int:
    """How long before ``lastUpdate`` a row was written: fixed per (state, coin, cohort)."""
    return (k * 1_000_003 + coin * 7_919 + seg * 104_729) % WRITE_SPREAD_MS


def _created(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["createdAt"].replace("Z", "+00:00"))


def _time(query: dict[str, str], key: str) -> datetime:
    try:
        moment = datetime.fromisoformat(query[key].replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"Invalid {key}: {query[key]!r} (expected ISO-8601)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadQuery(f"Invalid limit: {raw!r} (1 to {MAX_LIMIT})")
    return int(raw)


def _encode_cursor(k: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"before": k})).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        k = int(doc["before"])
    except (ValueError, TypeError, KeyError):
        raise BadQuery(f"Invalid nextCursor: {cursor!r}") from None
    if k < 0:
        raise BadQuery(f"Invalid nextCursor: {cursor!r}")
    return k
