"""A synthetic Hyperliquid market behind the simulated HyperTracker API, deterministic per seed.

The market moves in *states*, as HyperTracker's data does: state ``k`` is stamped
``t_k = start + (sum of k intervals)``, each interval 15-30 minutes. Between states a latent
market evolves one step at a time (mean-reverting random walks, some jumps): open interest
per coin, position counts per cohort, each cohort's long share, how recently positions were
opened. Every random draw is derived from ``(seed, step)`` (in blocks of steps), so state
``k`` is the same whichever order states are asked for.

What a state emits is built to satisfy, exactly, what the real payload satisfies:

- positions live in an 8x8 grid of (size cohort x PnL cohort) cells per coin; a size
  segment is its row sum and a PnL segment its column sum, so both ladders partition the
  same positions; the coin total adds a few unassigned positions, so the ladder sums sit
  just under it (as in the seed document's BTC example);
- window ``all``: every long has a short, so the coin's long and short values are equal;
- windows nest per cell: positions opened within 24h are a subset of those within 7d, and
  so on, so 24h <= 7d <= 30d <= all for every count and value, per coin and per segment;
- every row: ``count == countLong + countShort``, ``totalValue == totalLongValue +
  totalShortValue`` (a float sum), ``bias == round(totalLongValue / totalValue, 3)``;
- a cohort with no position in a coin is left out of that coin's ``segments``.

Nothing here knows about HTTP: :mod:`.server` serves what :class:`Market` emits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import orjson

from flows.cohorts import COHORTS, PNL_LADDER, SIZE_LADDER, Cohort
from simulator.pricing import MarketPrices

WINDOWS: Final = ("24h", "7d", "30d", "all")
DEFAULT_START: Final = datetime(2026, 11, 1, tzinfo=UTC)
# How far before the market's first state prices (candles, funding) reach: beyond the 5000
# hourly candles the info API keeps.
HISTORY_DAYS: Final = 240.0

# --- the cohort ladder ----------------------------------------------------------------------
# The 16 cohorts come from flows/cohorts.py (the dbt seed), in ladder order: the size ladder
# smallest first (Shrimp is id 16), then the PnL ladder best first.

SIZE_IDS: Final = SIZE_LADDER  # grid rows, in order
PNL_IDS: Final = PNL_LADDER  # grid columns, in order
# Where each segment id (1..16, ascending) sits among the grid's row sums then column sums.
_LADDER_IDS: Final = (*SIZE_IDS, *PNL_IDS)
_SEGMENT_ORDER: Final = sorted(range(len(_LADDER_IDS)), key=_LADDER_IDS.__getitem__)


def segment_json(cohort: Cohort) -> dict[str, Any]:
    """The cohort as ``GET /segments`` lists it (bounds in USD, None = open end)."""
    if cohort.ladder == "size":
        criteria = {"minEquity": cohort.lower_usd, "maxEquity": cohort.upper_usd}
    else:
        criteria = {"minPnl": cohort.lower_usd, "maxPnl": cohort.upper_usd}
    return {
        "id": cohort.segment_id,
        "name": cohort.name,
        "category": cohort.ladder,
        "emoji": cohort.emoji,
        "criteria": criteria,
    }


# --- calibration (from the seed document's BTC example) ------------------------------------

BTC_OI: Final = 1.2e9  # gross notional (long + short), window all
BTC_POSITIONS: Final = 24_000
# Share of a BTC-sized coin's positions per size cohort, and how that share scales with
# the coin's size (whales rarely bother with micro caps; shrimp crowd them).
ROW_SHARE = np.array([0.41, 0.446, 0.083, 0.019, 0.0265, 0.0057, 0.0064, 0.0021])
ROW_BETA = np.array([-0.08, 0.0, 0.05, 0.08, 0.1, 0.13, 0.16, 0.2])
# Average position (USD) per size cohort in a BTC-sized coin; scales as OI**0.4 below.
ROW_AVG = np.array([390.0, 4.8e3, 41e3, 118e3, 347e3, 1.1e6, 2.46e6, 6.1e6])
PNL_MULT = np.array([1.4, 1.2, 1.0, 0.8, 0.8, 1.0, 1.2, 1.5])  # leverage habits per PnL cohort
# P(PnL cohort | size cohort): shrimp are mostly Exit Liquidity / Humble Earners,
# leviathans mostly Money Printers or Giga-Rekt.
MIX = np.array(
    [
        [0.0002, 0.001, 0.005, 0.4, 0.55, 0.04, 0.003, 0.001],
        [0.001, 0.005, 0.03, 0.38, 0.5, 0.07, 0.012, 0.002],
        [0.005, 0.03, 0.12, 0.28, 0.32, 0.18, 0.05, 0.015],
        [0.02, 0.09, 0.2, 0.16, 0.2, 0.2, 0.11, 0.02],
        [0.04, 0.16, 0.2, 0.1, 0.12, 0.18, 0.16, 0.04],
        [0.12, 0.25, 0.14, 0.05, 0.06, 0.1, 0.2, 0.08],
        [0.28, 0.24, 0.08, 0.03, 0.03, 0.06, 0.14, 0.14],
        [0.55, 0.08, 0.02, 0.01, 0.01, 0.02, 0.06, 0.25],
    ]
)
# Long-share logits: losers lean long, smart money short; the coin-level balance (every long
# has a short) shifts them all by one constant per coin, so only the differences matter.
ROW_BIAS = np.array([0.1, 0.25, 0.3, 0.25, 0.0, -0.3, -0.1, -0.1])
COL_BIAS = np.array([-0.5, -0.6, -0.2, 0.0, 0.5, 0.6, 0.5, 1.2])
# Loadings on a coin's crowd sentiment: retail and losers chase it, smart money fades it.
ROW_LOAD = np.array([0.6, 0.5, 0.3, 0.1, 0.0, 0.0, -0.1, -0.1])
COL_LOAD = np.array([-0.5, -0.4, -0.1, 0.2, 0.5, 0.4, 0.3, 0.3])
# Recency: retail churns (more of its positions are recent) while whales hold.
ROW_RECENCY = np.array([0.5, 0.4, 0.2, 0.0, -0.1, -0.2, -0.3, -0.4])

# --- the coin universe ------------------------------------------------------------------------

# Real Hyperliquid perps, largest first; the first ones carry their typical open interest.
MAJORS: Final = (
    *("BTC", "ETH", "SOL", "HYPE", "XRP", "DOGE", "SUI", "BNB", "ENA", "kPEPE", "FARTCOIN"),
    *("LINK", "AVAX", "ADA", "LTC", "PUMP", "ZEC", "ASTER", "WLD", "TRUMP", "AAVE", "XPL"),
    *("TAO", "NEAR", "BCH", "DOT", "UNI", "ARB", "OP", "APT", "TON", "TIA", "SEI", "INJ"),
    *("JUP", "kBONK", "kSHIB", "ONDO", "PENGU", "VIRTUAL", "POPCAT", "WIF", "LDO", "CRV"),
    *("PENDLE", "ETHFI", "EIGEN", "ZRO", "STRK", "BERA", "IP", "KAITO", "S", "TRX", "HBAR"),
    *("XLM", "ETC", "FIL", "ATOM", "ICP", "RENDER", "FET", "GRT", "MOVE", "ME", "PURR"),
    *("AI16Z", "GRASS", "JTO", "PYTH", "W", "DYDX", "SNX", "GMX", "BLUR", "IMX", "SAND"),
    *("APE", "MNT", "ORDI", "kFLOKI", "MEW", "BRETT", "GOAT", "MOODENG", "SPX", "LAYER"),
)
MAJOR_OI: Final = {
    "BTC": 1.2e9, "ETH": 6.0e8, "HYPE": 3.0e8, "SOL": 2.4e8, "XRP": 1.3e8, "DOGE": 8.0e7,
    "SUI": 5.5e7, "BNB": 4.0e7, "ENA": 3.5e7, "kPEPE": 3.0e7, "FARTCOIN": 2.8e7,
    "LINK": 2.6e7, "AVAX": 2.4e7, "ADA": 2.2e7, "LTC": 2.0e7, "PUMP": 1.9e7, "ZEC": 1.8e7,
    "ASTER": 1.7e7, "WLD": 1.6e7, "TRUMP": 1.5e7, "AAVE": 1.4e7, "XPL": 1.3e7,
}  # fmt: skip
# Builder-deployed (HIP-3) markets: a dex prefix, a colon, an asset.
HIP3: Final = (
    *("xyz:GOLD", "xyz:TSLA", "xyz:NVDA", "xyz:AAPL", "xyz:XYZ100", "xyz:SILVER"),
    *("flx:NVDA", "flx:TSLA", "flx:OIL", "flx:GOLD", "km:SILVER", "km:US500", "km:GOLD"),
    *("vntl:SPACEX", "vntl:OPENAI"),
)
N_BASE_COINS: Final = 330  # listed at the market's start
HORIZON_DAYS: Final = 180  # listings and delistings are scheduled this far ahead
LISTINGS_PER_DAY: Final = 0.6
DELISTINGS_PER_DAY: Final = 0.5
PROTECTED_RANKS: Final = 80  # the largest coins never delist

_CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
_VOWELS = "AEIOU"


def _ticker(rng: np.random.Generator) -> str:
    """A plausible perp ticker: pronounceable capitals, now and then a meme-style k prefix."""
    shape = rng.choice(["CVC", "CVCV", "CVCC", "VCVC", "CVCVC", "CCVC", "CVVC"])
    letters = [
        _CONSONANTS[rng.integers(len(_CONSONANTS))]
        if ch == "C"
        else _VOWELS[rng.integers(len(_VOWELS))]
        for ch in shape
    ]
    name = "".join(str(letter) for letter in letters)
    if rng.random() < 0.03:
        name = "k" + name
    elif rng.random() < 0.05:
        name += str(rng.choice(["AI", "X", "FI", "2"]))
    return name


# --- the latent state: one row per coin, one column per process ---------------------------

LOG_OI, LOG_N, SENT = 0, 1, 2
A = slice(3, 11)  # size-cohort long-share logits
P = slice(11, 19)  # PnL-cohort long-share logits
ZR = slice(19, 27)  # size-cohort position-count drift (log)
ZC = slice(27, 35)  # PnL-cohort position-count drift (log)
YR = slice(35, 43)  # size-cohort average position size drift (log)
DR = slice(43, 51)  # size-cohort count-vs-value long-share offset
DC = slice(51, 59)  # PnL-cohort count-vs-value long-share offset
# Recency logits: 30d|all, 7d|30d, 24h|7d shared by both sides, then the long-minus-short
# difference of each (recent flow leaning one way).
REC = slice(59, 65)
D = 65
BIAS_COLS = slice(3, 19)  # A and P: where jumps and flips happen

STEPS_PER_DAY = 64  # an average state interval of 22.5 minutes
BLOCK = 64  # steps whose shocks are drawn together (one generator per block)
CHECKPOINT_EVERY = 256
JUMP_P = 1.0 / 512  # per (coin, cohort) and step: about one jump or flip per 8 days

# Stream tags for np.random.SeedSequence([seed, tag, ...]).
_TAG_STATIC, _TAG_INIT, _TAG_SHOCKS, _TAG_EMIT, _TAG_INTERVALS = 1, 2, 3, 4, 5
_INTERVAL_CHUNK = 4096
_MIN_INTERVAL_MS, _MAX_INTERVAL_MS = 15 * 60_000, 30 * 60_000


def _ou_params() -> tuple[np.ndarray, np.ndarray]:
    """Mean reversion per step and stationary standard deviation, per latent column."""
    theta = np.empty(D)
    sd = np.empty(D)

    def put(cols: int | slice, half_life_days: float, stationary_sd: float) -> None:
        theta[cols] = math.log(2) / (half_life_days * STEPS_PER_DAY)
        sd[cols] = stationary_sd

    put(LOG_OI, 30, 0.25)  # about 6% a day, bounded over months
    put(LOG_N, 30, 0.15)
    put(SENT, 1.5, 0.5)
    put(A, 3, 0.3)
    put(P, 3, 0.3)
    put(ZR, 10, 0.25)
    put(ZC, 10, 0.25)
    put(YR, 10, 0.25)
    put(DR, 5, 0.3)
    put(DC, 5, 0.3)
    put(slice(59, 62), 1, 0.35)
    put(slice(62, 65), 1, 0.2)
    return theta, sd


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def iso_ms(moment: datetime) -> str:
    """``2026-11-24T15:30:00.000Z``: ISO-8601 UTC with milliseconds, as the API writes dates."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _as_utc(moment: datetime) -> datetime:
    # Naive datetimes are UTC by the project's convention.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Market:
    """The simulated market: states in time, and the heatmap each state emits.

    Not thread-safe: :class:`~.server.SimulatedApi` serialises access with a lock.
    Returned heatmaps are cached and shared: treat them as read-only.
    """

    def __init__(
        self, seed: int = 7, start: datetime = DEFAULT_START, history_days: float = HISTORY_DAYS
    ) -> None:
        self.seed = int(seed)
        start = _as_utc(start)
        # Whole milliseconds, as the API writes times: lastUpdate then names its state exactly.
        self.start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        self._cum_ms = np.zeros(1, dtype=np.int64)  # cum_ms[k] = t_k - start, in ms
        self._build_universe()
        self._theta, sd = _ou_params()
        # Uniform shocks with the OU's per-step variance: sums of many small steps are
        # Gaussian anyway, and uniform draws cost a quarter of normal ones.
        sigma = sd * np.sqrt(2 * self._theta - self._theta**2)
        self._shock_scale = 2 * math.sqrt(3) * sigma
        self._drift = self._theta * self._mu - math.sqrt(3) * sigma  # (C, D)
        self._keep = 1.0 - self._theta
        init = np.random.default_rng([self.seed, _TAG_INIT])
        x0 = self._mu + init.standard_normal(self._mu.shape) * sd
        # Start open interest near its calibrated level: BTC about 1.2e9 on day one.
        x0[:, LOG_OI] = self._mu[:, LOG_OI] + init.standard_normal(self.n_coins) * 0.1
        self._checkpoints: dict[int, np.ndarray] = {0: x0}
        # The crowd mood of every state computed so far (prices lean on it), by state.
        self._sent_hist = np.zeros((1024, self.n_coins), dtype=np.float32)
        self._sent_hist[0] = x0[:, SENT]
        self._sent_upto = 0
        self.prices = MarketPrices(self, history_days)
        self._cur_step, self._cur = 0, x0.copy()
        self._block: tuple[int, np.ndarray, dict[int, tuple[np.ndarray, ...]]] | None = None
        self._snapshots: OrderedDict[int, dict[str, list[dict[str, Any]]]] = OrderedDict()
        self._json: OrderedDict[tuple[int, str], bytes] = OrderedDict()

    # --- universe -----------------------------------------------------------------------------

    def _build_universe(self) -> None:
        rng = np.random.default_rng([self.seed, _TAG_STATIC])
        taken = set(MAJORS) | set(HIP3)
        generated: list[str] = []
        n_future = int(HORIZON_DAYS * LISTINGS_PER_DAY)
        n_generated = N_BASE_COINS - len(MAJORS) - len(HIP3)
        while len(generated) < n_generated + n_future:
            name = _ticker(rng)
            if name not in taken:
                taken.add(name)
                generated.append(name)
        base_plain = [*MAJORS, *generated[:n_generated]]
        future = generated[n_generated:]

        # Open interest by rank: explicit for the majors, then log-linear down the tail
        # (about 11M USD at rank 22, 300k at rank 250, a few thousand at the very end).
        ranks = np.arange(len(base_plain), dtype=float)
        tail = np.interp(ranks, [22, 250, len(base_plain) - 1], np.log([1.1e7, 3e5, 3e3]))
        log_oi = tail + rng.normal(0, 0.3, len(base_plain))
        for i, name in enumerate(base_plain):
            if name in MAJOR_OI:
                log_oi[i] = math.log(MAJOR_OI[name])
        hip3_oi = rng.uniform(math.log(2e5), math.log(1.5e7), len(HIP3))
        future_oi = rng.uniform(math.log(2e5), math.log(2e7), len(future))
        self.coin_names: tuple[str, ...] = (*base_plain, *HIP3, *future)
        self.n_coins = c = len(self.coin_names)
        base_log_oi = np.concatenate([log_oi, hip3_oi, future_oi])

        # Listings and delistings, spread evenly (with jitter) over the horizon, so any week
        # sees a few of each. Times are offsets from the start, in ms.
        day_ms = 86_400_000
        self._list_ms = np.full(c, np.iinfo(np.int64).min // 4, dtype=np.int64)
        self._delist_ms = np.full(c, np.iinfo(np.int64).max // 4, dtype=np.int64)
        first_future = len(base_plain) + len(HIP3)
        days = (np.arange(len(future)) + rng.uniform(0.1, 0.9, len(future))) / LISTINGS_PER_DAY
        self._list_ms[first_future:] = (days * day_ms).astype(np.int64)
        eligible = np.arange(PROTECTED_RANKS, len(base_plain))
        n_delist = min(int(HORIZON_DAYS * DELISTINGS_PER_DAY), len(eligible))
        victims = rng.permutation(eligible)[:n_delist]
        days = (np.arange(n_delist) + rng.uniform(0.1, 0.9, n_delist)) / DELISTINGS_PER_DAY
        self._delist_ms[victims] = (days * day_ms).astype(np.int64)

        # Static structure per coin: how this coin's cohorts differ from the calibration.
        self._static_count = rng.normal(0, 0.25, (c, 8, 8))
        self._static_value = rng.normal(0, 0.2, (c, 8, 8))
        self._static_bias = rng.normal(0, 0.15, (c, 8, 8))
        self._static_dcount = rng.normal(0, 0.2, (c, 8, 8))
        self._recency_row = ROW_RECENCY + rng.normal(0, 0.15, (c, 8))
        self._gamma = rng.uniform(0.85, 1.15, (c, 8))  # recent positions' size vs older ones
        self._unassigned_long = rng.integers(1, 4, c)
        self._unassigned_short = rng.integers(1, 4, c)
        self._unassigned_frac = np.exp(rng.normal(math.log(2e-6), 0.5, c))

        mu = np.zeros((c, D))
        mu[:, LOG_OI] = base_log_oi
        mu[:, A] = ROW_BIAS + rng.normal(0, 0.2, (c, 8))
        mu[:, P] = COL_BIAS + rng.normal(0, 0.2, (c, 8))
        mu[:, DR] = rng.normal(0, 0.3, (c, 8))
        mu[:, DC] = rng.normal(0, 0.3, (c, 8))
        mu[:, 59:62] = np.array([1.4, 0.2, -0.85]) + rng.normal(0, 0.2, (c, 3))
        mu[:, 62:65] = rng.normal(0, 0.1, (c, 3))
        self._mu = mu

    def listing_schedule(self) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Every coin of the universe: (listed at, delisted at); None = before start / never."""
        out: dict[str, tuple[datetime | None, datetime | None]] = {}
        for i, name in enumerate(self.coin_names):
            lst, dl = int(self._list_ms[i]), int(self._delist_ms[i])
            out[name] = (
                None if lst < 0 else self.start + timedelta(milliseconds=lst),
                None
                if dl >= np.iinfo(np.int64).max // 4
                else self.start + timedelta(milliseconds=dl),
            )
        return out

    def coins_at(self, k: int) -> list[str]:
        """Names of the coins listed at state ``k`` (the heatmap's coins in window ``all``)."""
        listed = self._listed(k)
        return [name for name, on in zip(self.coin_names, listed, strict=True) if on]

    def _listed(self, k: int) -> np.ndarray:
        t = self._t_ms(k)
        return (self._list_ms <= t) & (t < self._delist_ms)

    # --- time ------------------------------------------------------------------------------------

    def _extend_intervals(self) -> None:
        chunk = (len(self._cum_ms) - 1) // _INTERVAL_CHUNK
        rng = np.random.default_rng([self.seed, _TAG_INTERVALS, chunk])
        steps = rng.integers(_MIN_INTERVAL_MS, _MAX_INTERVAL_MS + 1, _INTERVAL_CHUNK)
        self._cum_ms = np.concatenate([self._cum_ms, self._cum_ms[-1] + np.cumsum(steps)])

    def _t_ms(self, k: int) -> int:
        if k < 0:
            raise ValueError(f"state index must be >= 0, got {k}")
        while k >= len(self._cum_ms):
            self._extend_intervals()
        return int(self._cum_ms[k])

    def state_time(self, k: int) -> datetime:
        """When state ``k`` was published (UTC, whole milliseconds)."""
        return self.start + timedelta(milliseconds=self._t_ms(k))

    def next_state_time(self, k: int) -> datetime:
        """When the state after ``k`` is published."""
        return self.state_time(k + 1)

    def state_index_at(self, now: datetime) -> int:
        """The latest state published at or before ``now``; ValueError before the start."""
        delta = _as_utc(now) - self.start
        if delta < timedelta(0):
            raise ValueError(f"{iso_ms(now)} is before the market's start {iso_ms(self.start)}")
        delta_ms = delta // timedelta(milliseconds=1)
        while self._cum_ms[-1] <= delta_ms:
            self._extend_intervals()
        return int(np.searchsorted(self._cum_ms, delta_ms, side="right")) - 1

    def status(self, k: int) -> dict[str, str]:
        """``GET /hypertracker/state/status`` at state ``k``.

        A real server cannot know when the next state lands: ``nextUpdate`` is the earliest
        (``lastUpdate`` + 15 min) and ``nextUpdateThreshold`` the latest (+ 30 min) it may.
        """
        t = self.state_time(k)
        return {
            "lastUpdate": iso_ms(t),
            "nextUpdate": iso_ms(t + timedelta(milliseconds=_MIN_INTERVAL_MS)),
            "nextUpdateThreshold": iso_ms(t + timedelta(milliseconds=_MAX_INTERVAL_MS)),
        }

    @staticmethod
    def segments() -> list[dict[str, Any]]:
        """``GET /segments``: the 16 cohorts in ladder order."""
        return [segment_json(cohort) for cohort in COHORTS]

    # --- latent dynamics -------------------------------------------------------------------

    def _shocks(self, block: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, ...]]]:
        """Uniform shocks for the block's steps, and its sparse jumps keyed by step offset."""
        if self._block is not None and self._block[0] == block:
            return self._block[1], self._block[2]
        rng = np.random.default_rng([self.seed, _TAG_SHOCKS, block])
        uniforms = rng.random((BLOCK, self.n_coins, D))
        n_bias = BIAS_COLS.stop - BIAS_COLS.start
        n_jumps = rng.poisson(BLOCK * self.n_coins * n_bias * JUMP_P)
        where = rng.integers(0, BLOCK * self.n_coins * n_bias, n_jumps)
        sizes = rng.normal(0, 0.8, n_jumps)
        flips = rng.random(n_jumps) < 0.5
        offset, rest = np.divmod(where, self.n_coins * n_bias)
        coin, col = np.divmod(rest, n_bias)
        jumps = {
            int(o): (coin[offset == o], col[offset == o] + BIAS_COLS.start,
                     sizes[offset == o], flips[offset == o])
            for o in np.unique(offset)
        }  # fmt: skip
        self._block = (block, uniforms, jumps)
        return uniforms, jumps

    def _step(self, x: np.ndarray, k: int) -> None:
        """Advance latent ``x`` (at step k - 1) to step ``k``, in place."""
        block, offset = divmod(k - 1, BLOCK)
        uniforms, jumps = self._shocks(block)
        x *= self._keep
        x += self._drift
        x += uniforms[offset] * self._shock_scale
        if offset in jumps:
            coin, col, size, flip = jumps[offset]
            mean = self._mu[coin, col]
            # A flip mirrors the cohort's stance around its norm and overshoots a little;
            # a jump shifts it: either way, day-over-day changes that mean something.
            x[coin, col] = np.where(
                flip, mean - 1.3 * (x[coin, col] - mean) - np.sign(size) * 0.3, x[coin, col] + size
            )

    def _latent(self, k: int) -> np.ndarray:
        """Latent state at step ``k`` (a shared array: do not modify)."""
        if k < 0:
            raise ValueError(f"state index must be >= 0, got {k}")
        if not self._cur_step <= k:
            base = max(s for s in self._checkpoints if s <= k)
            self._cur_step, self._cur = base, self._checkpoints[base].copy()
        while self._cur_step < k:
            self._cur_step += 1
            self._step(self._cur, self._cur_step)
            if self._cur_step > self._sent_upto:
                self._record_sentiment(self._cur_step, self._cur[:, SENT])
            if self._cur_step % CHECKPOINT_EVERY == 0:
                self._checkpoints[self._cur_step] = self._cur.copy()
        return self._cur

    def _record_sentiment(self, k: int, sent: np.ndarray) -> None:
        if k >= len(self._sent_hist):
            grown = np.zeros((2 * len(self._sent_hist), self.n_coins), dtype=np.float32)
            grown[: len(self._sent_hist)] = self._sent_hist
            self._sent_hist = grown
        self._sent_hist[k] = sent
        self._sent_upto = k

    def sentiment(self, states: np.ndarray) -> np.ndarray:
        """The crowd mood (latent ``SENT``) at each of ``states``: (coins, len(states))."""
        states = np.asarray(states)
        top = int(states.max()) if states.size else 0
        if top > self._sent_upto:
            self._latent(top)  # steps through (and records) every state up to it
        return self._sent_hist[states].T

    def states_at_ms(self, ms: np.ndarray) -> np.ndarray:
        """The state in force at each time (ms since the start); -1 before the first."""
        ms = np.asarray(ms)
        if ms.size:
            while self._cum_ms[-1] <= ms.max():
                self._extend_intervals()
        return np.searchsorted(self._cum_ms, ms, side="right") - 1

    def known_until_ms(self) -> int:
        """Until when (ms since the start) the moods computed so far fix the prices."""
        return self._t_ms(self._sent_upto + 1)

    def ms_of(self, moment: datetime) -> int:
        """A moment as ms since the market's start (negative before it)."""
        return (_as_utc(moment) - self.start) // timedelta(milliseconds=1)

    # --- emission --------------------------------------------------------------------------

    def snapshot(self, k: int) -> dict[str, list[dict[str, Any]]]:
        """The four windows' ``heatmap`` lists at state ``k`` (cached; read-only)."""
        if k in self._snapshots:
            self._snapshots.move_to_end(k)
            return self._snapshots[k]
        snap = self._emit(k)
        self._snapshots[k] = snap
        while len(self._snapshots) > 4:
            self._snapshots.popitem(last=False)
        return snap

    def heatmap(self, k: int, window: str = "all") -> list[dict[str, Any]]:
        """The ``heatmap`` list of one window at state ``k`` (cached; read-only)."""
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; expected one of {', '.join(WINDOWS)}")
        return self.snapshot(k)[window]

    def heatmap_json(self, k: int, window: str = "all") -> bytes:
        """The response body of ``GET /positions/heatmap?openedWithin=window`` at state ``k``."""
        key = (k, window)
        if key not in self._json:
            self._json[key] = orjson.dumps({"heatmap": self.heatmap(k, window)})
            while len(self._json) > 16:
                self._json.popitem(last=False)
        return self._json[key]

    def _emit(self, k: int) -> dict[str, list[dict[str, Any]]]:
        x = self._latent(k)
        rng = np.random.default_rng([self.seed, _TAG_EMIT, k])
        t_ms = self._t_ms(k)
        listed = (self._list_ms <= t_ms) & (t_ms < self._delist_ms)
        day = 86_400_000.0
        age_days = (t_ms - self._list_ms) / day
        ramp = np.clip(1.0 - np.exp(-2.0 * age_days), 0.02, 1.0)
        ramp *= np.clip((self._delist_ms - t_ms) / (1.5 * day), 0.03, 1.0)

        # Gross open interest and expected positions per cell.
        # Open interest in coins (at the start's prices) moves on its own; valued at the
        # state's marks it is the notional the cohorts hold: size x mark.
        coins_oi = np.exp(x[:, LOG_OI]) * ramp
        ratio = coins_oi / BTC_OI
        oi = coins_oi * self.prices.marks_at(t_ms) / self.prices.p0
        positions = BTC_POSITIONS * ratio**0.45 * np.exp(x[:, LOG_N])
        rows = ROW_SHARE * ratio[:, None] ** ROW_BETA
        rows /= rows.sum(axis=1, keepdims=True)
        jitter = rng.normal(0, 0.005, (self.n_coins, 8, 8))
        lam = (positions[:, None, None] * rows[:, :, None] * MIX) * np.exp(
            x[:, ZR][:, :, None] + x[:, ZC][:, None, :] + self._static_count + jitter
        )
        n = np.rint(lam)
        n[~listed] = 0

        # Gross value per cell, scaled so the cells add up to the coin's open interest.
        avg = (ROW_AVG[:, None] * PNL_MULT) * (ratio**0.4)[:, None, None]
        gross = n * avg * np.exp(x[:, YR][:, :, None] + self._static_value)
        total = gross.sum(axis=(1, 2))
        gross *= np.divide(oi, total, out=np.zeros_like(oi), where=total > 0)[:, None, None]

        # Long shares. One shift per coin balances longs against shorts (Newton on the
        # value-weighted imbalance), so cohorts lean against each other, not all one way.
        logit = (
            x[:, A][:, :, None]
            + x[:, P][:, None, :]
            + x[:, SENT][:, None, None] * (ROW_LOAD[:, None] + COL_LOAD)
            + self._static_bias
        )
        shift = np.zeros(self.n_coins)
        for _ in range(6):
            share = _sigmoid(logit + shift[:, None, None])
            f = (gross * (2 * share - 1)).sum(axis=(1, 2))
            fp = (2 * gross * share * (1 - share)).sum(axis=(1, 2))
            step = np.divide(f, fp, out=np.zeros_like(f), where=fp > 0)
            shift -= np.clip(step, -2, 2)
        logit += shift[:, None, None]
        share = _sigmoid(logit)
        # Count shares follow value shares loosely; one more shift per coin sets the coin's
        # share of long positions (its crowding) near a level that follows the crowd's mood.
        count_logit = (
            0.6 * logit + x[:, DR][:, :, None] + x[:, DC][:, None, :] + self._static_dcount
        )
        target = _sigmoid(0.6 * x[:, SENT]) * n.sum(axis=(1, 2))
        shift = np.zeros(self.n_coins)
        for _ in range(4):
            cshare = _sigmoid(count_logit + shift[:, None, None])
            f = (n * cshare).sum(axis=(1, 2)) - target
            fp = (n * cshare * (1 - cshare)).sum(axis=(1, 2))
            step = np.divide(f, fp, out=np.zeros_like(f), where=fp > 0)
            shift -= np.clip(step, -2, 2)
        count_share = _sigmoid(count_logit + shift[:, None, None])
        n_long = np.rint(n * count_share)
        n_short = n - n_long
        share = np.where(n_long == 0, 0.0, np.where(n_short == 0, 1.0, share))
        long_v = gross * share
        short_v = gross * (1 - share)
        # Cells where one side is forced to zero leave a residue: rescale each side to the
        # mean (a pure per-coin odds shift), then the unassigned positions absorb float dust.
        s_long, s_short = long_v.sum(axis=(1, 2)), short_v.sum(axis=(1, 2))
        mean = (s_long + s_short) / 2
        long_v *= np.divide(mean, s_long, out=np.ones_like(mean), where=s_long > 0)[:, None, None]
        short_v *= np.divide(mean, s_short, out=np.ones_like(mean), where=s_short > 0)[
            :, None, None
        ]
        # At least a dollar per position, so a side with positions never shows a zero value.
        long_v = np.where(n_long > 0, np.maximum(long_v, n_long), 0.0)
        short_v = np.where(n_short > 0, np.maximum(short_v, n_short), 0.0)

        # Recency: the fraction of each side's positions opened within 30d, 7d, 24h, as a
        # chain of conditional fractions (so the windows nest). A coin listed less than a
        # window ago has all its positions inside that window.
        rec = x[:, REC]
        fractions = {}
        for side, sign in (("long", 0.5), ("short", -0.5)):
            side_rec = rec[:, :3] + sign * rec[:, 3:]
            f30 = _sigmoid(side_rec[:, 0, None] + self._recency_row)
            f7 = f30 * _sigmoid(side_rec[:, 1, None] + self._recency_row)
            f24 = f7 * _sigmoid(side_rec[:, 2, None] + self._recency_row)
            f30 = np.where((age_days < 30)[:, None], 1.0, f30)
            f7 = np.where((age_days < 7)[:, None], 1.0, f7)
            f24 = np.where((age_days < 1)[:, None], 1.0, f24)
            fractions[side] = {"30d": f30, "7d": f7, "24h": f24}

        # Unassigned positions: a few per coin and side, worth a little; they make the coin
        # totals exceed the ladder sums and, in window all, balance longs and shorts exactly.
        cells_long = np.round(long_v, 5)
        cells_short = np.round(short_v, 5)
        sum_long = cells_long.reshape(self.n_coins, -1).sum(axis=1)
        sum_short = cells_short.reshape(self.n_coins, -1).sum(axis=1)
        n_ul = self._unassigned_long.astype(float)
        n_us = self._unassigned_short.astype(float)
        eps = oi * self._unassigned_frac + 15.0 * (n_ul + n_us) * rng.uniform(
            0.5, 1.5, self.n_coins
        )
        coin_side = np.round(np.maximum(sum_long, sum_short) + eps, 5)
        u_long = coin_side - sum_long
        u_short = coin_side - sum_short

        out: dict[str, list[dict[str, Any]]] = {}
        for window in WINDOWS:
            if window == "all":
                cl, cs, vl, vs = n_long, n_short, cells_long, cells_short
                ul_n, us_n = n_ul, n_us
                coin_long = coin_short = coin_side
            else:
                fl = fractions["long"][window][:, :, None]
                fs = fractions["short"][window][:, :, None]
                cl, cs = np.floor(n_long * fl), np.floor(n_short * fs)
                gamma = self._gamma[:, :, None]
                vl = np.round(long_v * _ratio(cl, n_long) ** gamma, 5)
                vs = np.round(short_v * _ratio(cs, n_short) ** gamma, 5)
                ul_n = np.floor(n_ul * fractions["long"][window][:, 0])
                us_n = np.floor(n_us * fractions["short"][window][:, 0])
                ul_v = np.round(u_long * _ratio(ul_n, n_ul), 5)
                us_v = np.round(u_short * _ratio(us_n, n_us), 5)
                # min(): the sums of the smaller window can exceed window all's only by float
                # dust; clamp so the nesting holds exactly.
                coin_long = np.minimum(vl.reshape(self.n_coins, -1).sum(axis=1) + ul_v, coin_side)
                coin_short = np.minimum(vs.reshape(self.n_coins, -1).sum(axis=1) + us_v, coin_side)
            coin_nl = cl.reshape(self.n_coins, -1).sum(axis=1) + ul_n
            coin_ns = cs.reshape(self.n_coins, -1).sum(axis=1) + us_n
            out[window] = self._rows(
                listed, coin_long, coin_short, coin_nl, coin_ns, cl, cs, vl, vs
            )
        return out

    def _rows(
        self,
        listed: np.ndarray,
        coin_long: np.ndarray,
        coin_short: np.ndarray,
        coin_nl: np.ndarray,
        coin_ns: np.ndarray,
        cl: np.ndarray,
        cs: np.ndarray,
        vl: np.ndarray,
        vs: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Coin objects, largest first, with their segments in segmentId order."""
        # Segment arrays (C, 16): the grid's row sums (size ladder) then column sums (PnL
        # ladder), reordered to ascending segmentId.
        order = _SEGMENT_ORDER

        def ladders(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a.sum(axis=2), a.sum(axis=1)], axis=1)[:, order]

        seg_vl, seg_vs = ladders(vl).tolist(), ladders(vs).tolist()
        seg_nl, seg_ns = (
            ladders(cl).astype(np.int64).tolist(),
            ladders(cs).astype(np.int64).tolist(),
        )
        ids = sorted(_LADDER_IDS)
        c_long, c_short = coin_long.tolist(), coin_short.tolist()
        c_nl, c_ns = coin_nl.astype(np.int64).tolist(), coin_ns.astype(np.int64).tolist()
        coins: list[dict[str, Any]] = []
        for i in np.flatnonzero(listed).tolist():
            count = c_nl[i] + c_ns[i]
            if count == 0:
                continue  # nobody opened a position in this coin within the window
            name = self.coin_names[i]
            segments = []
            svl, svs, snl, sns = seg_vl[i], seg_vs[i], seg_nl[i], seg_ns[i]
            for j, seg_id in enumerate(ids):
                nl, ns = snl[j], sns[j]
                if nl + ns == 0:
                    continue  # absence means zero positions
                lv, sv = svl[j], svs[j]
                tv = lv + sv
                segments.append(
                    {
                        "segmentId": seg_id,
                        "coin": name,
                        "totalValue": tv,
                        "totalLongValue": lv,
                        "totalShortValue": sv,
                        "count": nl + ns,
                        "countLong": nl,
                        "countShort": ns,
                        "bias": round(lv / tv, 3),
                    }
                )
            coins.append(
                {
                    "coin": name,
                    "totalValue": c_long[i] + c_short[i],
                    "totalLongValue": c_long[i],
                    "totalShortValue": c_short[i],
                    "count": count,
                    "countLong": c_nl[i],
                    "countShort": c_ns[i],
                    "segments": segments,
                }
            )
        coins.sort(key=lambda coin: (-coin["totalValue"], coin["coin"]))
        return coins


def _ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, 0 where whole is 0."""
    return np.divide(part, whole, out=np.zeros_like(part, dtype=float), where=whole > 0)
