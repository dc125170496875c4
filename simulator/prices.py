"""Prices for the simulated market: one random walk per coin on a 5-minute grid.

What the info API serves (marks, candles, funding) and what the heatmap values (notional =
size in coins x mark) all come from :class:`PriceWalk`, so they agree by construction:

- a coin's log price at grid point ``g`` is ``log P0 + W(g) + loading * sentiment(g)``:
  ``W`` a Gaussian random walk (per-coin daily volatility), ``sentiment`` the market model's
  crowd mood at the state in force at ``g`` (the retail crowd's positioning and the price
  move together; before the market's first state it is held at its first value);
- the walk is drawn in blocks of 8 days, one generator per (seed, block), so any span of
  time, before or after the start, is the same whichever order it is asked for;
- a mark is the grid price at or before the moment, rounded as Hyperliquid rounds prices
  (5 significant figures); a candle is the open, high, low and close of the rounded grid
  prices in its hour, so every mark served lies within its candle.

Nothing here knows about HTTP or payloads: :mod:`.info` shapes the answers.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

STEP_MS: Final = 300_000  # the grid: 5 minutes
HOUR_MS: Final = 3_600_000
STEPS_PER_HOUR: Final = HOUR_MS // STEP_MS
BLOCK_STEPS: Final = 8 * 24 * STEPS_PER_HOUR  # 8 days per generator
BLOCK_HOURS: Final = BLOCK_STEPS // STEPS_PER_HOUR
_BLOCK_OFFSET: Final = 2**31  # SeedSequence wants non-negative entropy
_TAG_WALK, _TAG_HOURLY = 11, 12


def round_price(px: np.ndarray, sz_decimals: np.ndarray) -> np.ndarray:
    """Hyperliquid's price rule: at most 5 significant figures and 6 - szDecimals decimals."""
    safe = np.where(px > 0, px, 1.0)
    decimals = np.minimum(4 - np.floor(np.log10(safe)), 6 - sz_decimals).astype(int)
    scale = np.power(10.0, decimals)
    return np.round(px * scale) / scale


def price_text(value: float, decimals: int | None = None) -> str:
    """A decimal string as the API writes one: no exponent, at least one decimal."""
    text = f"{value:.{decimals if decimals is not None else 8}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class PriceWalk:
    """The random-walk part ``W`` of every coin's log price, on the 5-minute grid.

    ``sigma_step`` is each coin's standard deviation per grid step. Grid index 0 is the
    market's start; negative indices reach back before it (the candle history).
    """

    def __init__(self, seed: int, sigma_step: np.ndarray) -> None:
        self.seed = seed
        self.sigma = sigma_step.astype(np.float32)
        self.n = len(sigma_step)
        self._totals: dict[int, np.ndarray] = {}
        self._cum: dict[int, np.ndarray] = {}
        self._bases: dict[int, np.ndarray] = {0: np.zeros(self.n)}

    def _block(self, b: int) -> np.ndarray:
        """Cumulative shocks within block ``b`` (n_coins x BLOCK_STEPS), cached for a few."""
        if b not in self._cum:
            rng = np.random.default_rng([self.seed, _TAG_WALK, b + _BLOCK_OFFSET])
            shocks = rng.standard_normal((self.n, BLOCK_STEPS), dtype=np.float32)
            cum = np.cumsum(shocks * self.sigma[:, None], axis=1, dtype=np.float64)
            self._totals[b] = cum[:, -1].copy()
            if len(self._cum) >= 6:
                self._cum.pop(next(iter(self._cum)))
            self._cum[b] = cum.astype(np.float32)
        return self._cum[b]

    def _total(self, b: int) -> np.ndarray:
        if b not in self._totals:
            self._block(b)
        return self._totals[b]

    def _base(self, b: int) -> np.ndarray:
        """W just before block ``b``'s first step (W before grid 0 is 0)."""
        if b not in self._bases:
            if b > 0:  # walk up from the nearest known base below
                k = max(k for k in self._bases if 0 <= k < b)
                while k < b:
                    self._bases[k + 1] = self._bases[k] + self._total(k)
                    k += 1
            else:  # walk down from the nearest known base above
                k = min(k for k in self._bases if b < k <= 0)
                while k > b:
                    self._bases[k - 1] = self._bases[k] - self._total(k - 1)
                    k -= 1
        return self._bases[b]

    def span(self, g0: int, g1: int) -> np.ndarray:
        """W at grid points ``g0 .. g1 - 1`` for every coin: (n_coins, g1 - g0)."""
        parts = []
        g = g0
        while g < g1:
            b, off = divmod(g, BLOCK_STEPS)
            end = min(g1 - b * BLOCK_STEPS, BLOCK_STEPS)
            parts.append(self._base(b)[:, None] + self._block(b)[:, off:end])
            g = b * BLOCK_STEPS + end
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.n, 0))

    def hourly_noise(self, h0: int, h1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-hour draws for hours ``h0 .. h1 - 1`` (hour 0 starts at grid 0): volume
        noise, funding noise (both standard normal) and a funding time offset in ms."""
        vol, fund, offset = [], [], []
        h = h0
        while h < h1:
            b, off = divmod(h, BLOCK_HOURS)
            end = min(h1 - b * BLOCK_HOURS, BLOCK_HOURS)
            rng = np.random.default_rng([self.seed, _TAG_HOURLY, b + _BLOCK_OFFSET])
            draws = rng.standard_normal((2, self.n, BLOCK_HOURS), dtype=np.float32)
            ms = rng.integers(1, 100, (self.n, BLOCK_HOURS))
            vol.append(draws[0][:, off:end])
            fund.append(draws[1][:, off:end])
            offset.append(ms[:, off:end])
            h = b * BLOCK_HOURS + end
        if not vol:
            empty = np.zeros((self.n, 0))
            return empty, empty, empty.astype(int)
        return (np.concatenate(vol, axis=1), np.concatenate(fund, axis=1),
                np.concatenate(offset, axis=1))  # fmt: skip


def daily_to_step(daily_vol: np.ndarray) -> np.ndarray:
    """A daily volatility as the standard deviation of one 5-minute step."""
    return daily_vol / math.sqrt(24 * STEPS_PER_HOUR)
