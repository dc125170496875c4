"""The simulated market's prices, volumes and funding, per coin, from one price path.

:class:`MarketPrices` belongs to a :class:`~.market.Market`: it reads the market's coins,
listing schedule, state times and crowd sentiment, and owns the random walk
(:class:`~.prices.PriceWalk`). Times here are milliseconds since the market's start.

- levels: real ones for the majors and the builder-dex (HIP-3) markets (BTC ~100k, ETH ~3k,
  xyz:GOLD ~3.4k), log-uniform from a tenth of a cent to tens of dollars for the rest;
  daily volatility from 1% (gold, indices) to ~6% (small coins);
- the crowd's mood (the market model's ``SENT``) moves the price with it, so the retail
  cohorts' long share follows the price loosely;
- hourly volume scales with the coin's open interest and with the hour's move; hourly
  funding is a small interest part plus a premium that leans with the crowd (about
  +-0.01% an hour).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from simulator.prices import (
    BLOCK_HOURS,
    HOUR_MS,
    STEP_MS,
    STEPS_PER_HOUR,
    PriceWalk,
    daily_to_step,
    round_price,
)

if TYPE_CHECKING:
    from simulator.market import Market

_TAG_PROFILE: Final = 6
INTEREST_HOURLY: Final = 0.0000125  # 0.01% per 8 hours, Hyperliquid's interest part
LEVELS: Final = {
    "BTC": 100_000.0, "ETH": 3_200.0, "SOL": 180.0, "HYPE": 38.0, "XRP": 2.3, "DOGE": 0.25,
    "SUI": 3.5, "BNB": 900.0, "ENA": 0.6, "kPEPE": 0.012, "FARTCOIN": 0.9, "LINK": 18.0,
    "AVAX": 25.0, "ADA": 0.7, "LTC": 100.0, "PUMP": 0.005, "ZEC": 250.0, "ASTER": 1.4,
    "WLD": 1.2, "TRUMP": 8.5, "AAVE": 280.0, "XPL": 0.9, "TAO": 420.0, "BCH": 520.0,
    "xyz:GOLD": 3_400.0, "flx:GOLD": 3_400.0, "km:GOLD": 3_400.0, "xyz:SILVER": 38.0,
    "km:SILVER": 38.0, "xyz:TSLA": 420.0, "flx:TSLA": 420.0, "xyz:NVDA": 180.0,
    "flx:NVDA": 180.0, "xyz:AAPL": 230.0, "xyz:XYZ100": 25_000.0, "km:US500": 6_500.0,
    "flx:OIL": 68.0, "vntl:SPACEX": 210.0, "vntl:OPENAI": 520.0,
}  # fmt: skip
DAILY_VOL: Final = {"BTC": 0.02, "ETH": 0.028, "SOL": 0.035, "HYPE": 0.045}


@dataclass
class Candles:
    """Hourly candles of every coin for a run of hours (arrays: coins x hours)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # in coins
    trades: np.ndarray
    grid_points: np.ndarray  # how many 5-minute points each hour holds (12 = whole)


class MarketPrices:
    """Marks, candles and funding of a market's coins (see the module docstring)."""

    def __init__(self, market: Market, history_days: float) -> None:
        self.market = market
        names = market.coin_names
        n = len(names)
        rng = np.random.default_rng([market.seed, _TAG_PROFILE])
        guess = np.exp(rng.uniform(math.log(0.001), math.log(60.0), n))
        self.p0 = np.array([LEVELS.get(name, g) for name, g in zip(names, guess, strict=True)])
        hip3 = np.array([":" in name for name in names])
        vol = np.where(hip3, rng.uniform(0.01, 0.025, n), rng.uniform(0.045, 0.065, n))
        vol = np.array([DAILY_VOL.get(name, v) for name, v in zip(names, vol, strict=True)])
        self.sz_decimals = np.clip(np.floor(np.log10(self.p0)), 0, 5).astype(int)
        self.max_leverage = np.where(hip3, 20, np.where(np.arange(n) < 25, 20, 5))
        self.max_leverage[: min(2, n)] = [40, 25][: min(2, n)]
        self.loading = rng.uniform(0.02, 0.04, n) * (vol / 0.03)  # log price per unit of mood
        self.funding_lean = rng.uniform(0.4, 1.0, n) * 1e-4
        base_oi = np.exp(market._mu[:, 0])
        self.daily_volume_usd = base_oi * rng.uniform(1.0, 3.0, n)
        self.avg_trade_usd = np.clip(base_oi / 4e5, 150.0, 4_000.0)
        self.walk = PriceWalk(market.seed, daily_to_step(vol))
        history_ms = int(history_days * 86_400_000)
        # A coin's prices begin at its listing, or history_days before the market's start.
        self.begin_ms = np.maximum(market._list_ms, -history_ms)
        self._hour_cache: dict[int, Candles] = {}
        # Hours and grid points are UTC's, whenever the market starts: the grid is counted
        # from the hour the start falls in, ``shift`` ms before it.
        self.shift = int(market.start.timestamp() * 1000) % HOUR_MS

    def hour_of(self, t_ms: int) -> int:
        """The UTC hour (its index; 0 holds the market's start) of ``t_ms`` since the start."""
        return (t_ms + self.shift) // HOUR_MS

    def hour_start(self, h: int) -> int:
        """When hour ``h`` begins, in ms since the market's start."""
        return h * HOUR_MS - self.shift

    # --- the grid ------------------------------------------------------------------------
    def _mood(self, g: np.ndarray) -> np.ndarray:
        """The crowd mood in force at grid points ``g`` (coins x points)."""
        states = self.market.states_at_ms(np.asarray(g) * STEP_MS - self.shift)
        return self.market.sentiment(np.maximum(states, 0))

    def prices(self, g0: int, g1: int) -> np.ndarray:
        """Rounded prices at grid points ``g0 .. g1 - 1``: (coins, points)."""
        log_px = self.walk.span(g0, g1) + self.loading[:, None] * self._mood(np.arange(g0, g1))
        px = self.p0[:, None] * np.exp(log_px)
        return round_price(px, self.sz_decimals[:, None])

    def marks_at(self, t_ms: int) -> np.ndarray:
        """Every coin's mark at ``t_ms`` (the grid price at or before it)."""
        g = (t_ms + self.shift) // STEP_MS
        return self.prices(g, g + 1)[:, 0]

    # --- candles -------------------------------------------------------------------------
    def hourly(self, h0: int, h1: int, now_ms: int) -> Candles:
        """Candles of hours ``h0 .. h1 - 1`` (hour 0 starts at the market's start), each
        built from the grid points up to ``now_ms``; an hour after now holds none.

        Whole 8-day blocks that lie in the past are computed once and kept; hours of the
        block that holds ``now`` are computed as asked, so a recent day costs a day's work.
        """
        parts = []
        h = h0
        final_ms = min(now_ms, self.market.known_until_ms())
        while h < h1:
            b = h // BLOCK_HOURS
            end = min(h1, (b + 1) * BLOCK_HOURS)
            if self.hour_start((b + 1) * BLOCK_HOURS) <= final_ms:
                if b not in self._hour_cache:
                    self._hour_cache[b] = self._hours(
                        b * BLOCK_HOURS, (b + 1) * BLOCK_HOURS, now_ms
                    )
                lo = h - b * BLOCK_HOURS
                block = self._hour_cache[b]
                parts.append(Candles(*(a[:, lo : lo + end - h] for a in vars(block).values())))
            else:
                parts.append(self._hours(h, end, now_ms))
            h = end
        return Candles(*(np.concatenate(arrays, axis=1) for arrays in
                         zip(*(vars(p).values() for p in parts), strict=True)))  # fmt: skip

    def _hours(self, h0: int, h1: int, now_ms: int) -> Candles:
        """Candles of hours ``h0 .. h1 - 1`` from the grid, up to ``now_ms``."""
        n_hours = h1 - h0
        g0 = h0 * STEPS_PER_HOUR
        known = min(h1 * STEPS_PER_HOUR, (now_ms + self.shift) // STEP_MS + 1)
        px = np.full((self.walk.n, n_hours * STEPS_PER_HOUR), np.nan)
        if known > g0:
            px[:, : known - g0] = self.prices(g0, known)
        grid = px.reshape(self.walk.n, n_hours, STEPS_PER_HOUR)
        points = np.clip(known - g0 - np.arange(n_hours) * STEPS_PER_HOUR, 0, STEPS_PER_HOUR)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # hours after now hold no points
            first = grid[:, :, 0]
            last_i = np.broadcast_to(
                np.maximum(points - 1, 0)[None, :, None], (self.walk.n, n_hours, 1)
            )
            last = np.take_along_axis(grid, last_i, 2)[..., 0]
            high, low = np.nanmax(grid, axis=2), np.nanmin(grid, axis=2)
            vol_z, _, _ = self.walk.hourly_noise(h0, h1)
            move = np.abs(np.log(np.where(first > 0, last / first, 1.0)))
            usd = (
                (self.daily_volume_usd[:, None] / 24) * np.exp(0.4 * vol_z - 0.08) * (1 + 25 * move)
            )
            usd = usd * (points / STEPS_PER_HOUR)
            close = np.where(np.isfinite(last), last, 1.0)
            scale = np.power(10.0, self.sz_decimals)[:, None]
            volume = np.round(usd / close * scale) / scale
        trades = np.maximum(np.rint(usd / self.avg_trade_usd[:, None]), points > 0).astype(int)
        counts = np.broadcast_to(points, first.shape).copy()
        return Candles(first, high, low, last, volume, trades, counts)

    # --- funding -------------------------------------------------------------------------
    def funding(self, h0: int, h1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rates paid at the ends of hours ``h0 .. h1 - 1`` (at ``(h + 1) * 1h`` plus a few
        ms) and their times in ms: both (coins, hours)."""
        _, z, offset = self.walk.hourly_noise(h0, h1)
        paid_ms = (np.arange(h0, h1) + 1) * HOUR_MS - self.shift
        mood = self.market.sentiment(np.maximum(self.market.states_at_ms(paid_ms), 0))
        rate = INTEREST_HOURLY + self.funding_lean[:, None] * np.tanh(mood) + 1.5e-5 * z
        return np.round(rate, 8), paid_ms[None, :] + offset
