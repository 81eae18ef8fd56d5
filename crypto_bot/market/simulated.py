"""A built-in simulated market: deterministic, stateless candles for any symbol, no network, no files.

Covers `SimulatedMarket` (the default data source of the paper-trading bot) and `generated_symbols`
(scanner-like names for growing universes). Does not cover replaying files (`csv_market`) or live
exchanges (`ccxt_market`); the frame layout and window rule live in `source`.

Prices are a pure function of (seed, symbol, time): nothing is stored per symbol and nothing grows
as the clock advances, so a months-long run or a universe of thousands costs O(1) memory, and a
fetch costs O(candles requested). The log-price of a symbol at base-candle boundary j is

    log P0                                   listing level (table below, or hashed from the name)
  + trend legs    piecewise-linear value noise, levels in {-1, 0, +1}: equal neighbours give a
                  ranging leg, different ones a trend leg lasting 1.5-3 days
  + slow drift    smooth value noise over two weeks
  + envelope(t) * (octaves + jitter)
                  octaves: smooth value noise at 4 min .. 17 h, amplitudes ~ sqrt(scale) so that
                  they add up to a random-walk-like, mean-reverting texture; jitter: hashed
                  Gaussian per boundary; envelope: exp of low-frequency noise, 0.75x .. 3.7x,
                  which produces volatility bursts lasting hours

Each base candle opens at P(j) and closes at P(j+1); wicks and volume are hashed per candle and
scale with the envelope. Higher timeframes are aggregated from base candles (open of first, max
high, min low, close of last, summed volume), in bounded chunks.

Symbols: `universe()` is the tradable list a scanner sees, but `fetch_ohlcv` serves any well-formed
"BASE/QUOTE" symbol, derived deterministically from its name, just as an exchange keeps serving
markets a scanner stopped watching (a position in a rotated-out symbol can still be valued).
Malformed names raise ValueError.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd

from crypto_bot.market.source import ohlcv_frame
from crypto_bot.market.stats import SourceStats
from crypto_bot.market.timeframes import (
    TIMEFRAME_MS,
    checked_fetch,
    timeframe_ms,
    validate_since_ms,
    validate_symbol,
    validate_timeframes,
)

logger = logging.getLogger(__name__)

DEFAULT_START_MS = 1_704_067_200_000
"""2024-01-01T00:00:00Z: the simulated clock's default start."""

DEFAULT_HISTORY_CANDLES = 200
"""Without `history_candles`, enough history for this many candles of the largest timeframe."""

_KNOWN_SYMBOLS: dict[str, tuple[float, float, float]] = {
    # symbol: (price, daily volatility scale ratio, quote volume per minute). Realised daily
    # volatility comes out about 1.5x the scale: the trend legs add to the texture's share.
    "BTC/USDT": (65_000.0, 0.030, 1_500_000.0),
    "ETH/USDT": (3_400.0, 0.038, 700_000.0),
    "SOL/USDT": (150.0, 0.055, 250_000.0),
    "BNB/USDT": (580.0, 0.030, 80_000.0),
    "XRP/USDT": (0.55, 0.045, 100_000.0),
    "DOGE/USDT": (0.12, 0.060, 80_000.0),
    "ADA/USDT": (0.45, 0.050, 40_000.0),
    "AVAX/USDT": (30.0, 0.060, 30_000.0),
}
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(_KNOWN_SYMBOLS)

_MINUTE_MS = 60_000
_MINUTES_PER_DAY = 1_440.0
_DRIFT_SCALE_MINUTES = 20_160.0
_VOLATILITY_SCALE_MINUTES = 360.0
_OCTAVE_SCALES_MINUTES = (4.0, 16.0, 64.0, 256.0, 1_024.0)
_OCTAVE_GAIN = 0.75
"""Octave amplitude per sqrt(minute) of scale, in per-minute volatilities: the summed octaves
move about 0.7 daily volatility scales a day, the trend legs about 1.2 (measured, not derived)."""
_TREND_LEG_RATIO = 2.5
"""Trend-leg level step, in daily volatilities: a trend leg moves 2.5 (or 5) sigmas over its 1.5-3 days."""
_DRIFT_RATIO = 5.0
_JITTER_RATIO = 0.7
_WICK_RATIO = 0.5
_BURST_LOG_RANGE = 1.6
_CALM_LOG_LEVEL = -0.3
_BURST_THRESHOLD = 0.2
_CHUNK_BASE_CANDLES = 1 << 16
"""Base candles computed at once when aggregating: bounds a fetch's transient memory (~10 MB)."""

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)


class _Stream(IntEnum):
    """Independent hash streams, one per random ingredient; a Gaussian pair uses two (n, n + 1)."""

    PROFILE = 0
    TREND = 1
    DRIFT = 2
    ENVELOPE = 3
    JITTER = 4
    WICK = 6
    VOLUME = 8
    OCTAVE = 10  # + octave number


_STREAM_COUNT = _Stream.OCTAVE + len(_OCTAVE_SCALES_MINUTES)


@dataclass(frozen=True, slots=True)
class _Profile:
    """Per-symbol constants, derived from (seed, symbol) on each fetch and never stored."""

    stream_keys: np.ndarray
    log_price: float
    minute_volatility_ratio: float
    quote_volume_per_minute: float
    trend_scale_minutes: float


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays (wrap-around arithmetic, no warnings for arrays)."""
    values = values ^ (values >> np.uint64(30))
    values = values * _MIX_MULTIPLIER_1
    values = values ^ (values >> np.uint64(27))
    values = values * _MIX_MULTIPLIER_2
    return values ^ (values >> np.uint64(31))


def _uniform(stream_key: np.uint64, index: np.ndarray) -> np.ndarray:
    """Hashed uniforms in [0, 1), one per integer in `index`, independent per stream key."""
    bits = _mix64(index.astype(np.int64).view(np.uint64) * _GOLDEN_GAMMA + stream_key)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _gaussian_pair(stream_keys: np.ndarray, stream: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals per integer in `index` (Box-Muller on streams n, n + 1)."""
    radius = np.sqrt(-2.0 * np.log1p(-_uniform(stream_keys[stream], index)))
    angle = (2.0 * math.pi) * _uniform(stream_keys[stream + 1], index)
    return radius * np.cos(angle), radius * np.sin(angle)


def _value_noise(stream_key: np.uint64, position: np.ndarray, *, smooth: bool = True) -> np.ndarray:
    """Noise in [-1, 1] interpolated between hashed lattice values at integer positions.

    Only the lattice points the positions touch are hashed, so the cost is O(len(position)).
    Non-smooth noise interpolates linearly between levels quantised to {-1, 0, +1}.
    """
    cell = np.floor(position)
    fraction = position - cell
    first_cell = int(cell[0])
    lattice = _uniform(stream_key, np.arange(first_cell, int(cell[-1]) + 2, dtype=np.int64))
    if smooth:
        lattice = 2.0 * lattice - 1.0
        fraction = fraction * fraction * (3.0 - 2.0 * fraction)
    else:
        lattice = np.floor(3.0 * lattice) - 1.0
    offset = (cell - first_cell).astype(np.intp)
    start = lattice[offset]
    return start + (lattice[offset + 1] - start) * fraction


def _profile(seed: int, symbol: str) -> _Profile:
    """Constants of `symbol`: the table's levels for known names, hashed ones for any other."""
    digest = hashlib.blake2b(f"{seed}\x00{symbol}".encode(), digest_size=8).digest()
    key = np.uint64(int.from_bytes(digest, "little"))
    stream_keys = _mix64(np.arange(_STREAM_COUNT, dtype=np.uint64) * _GOLDEN_GAMMA ^ key)
    draws = _uniform(stream_keys[_Stream.PROFILE], np.arange(4, dtype=np.int64))
    known = _KNOWN_SYMBOLS.get(symbol)
    if known is None:
        price = math.exp(math.log(1e-3) + draws[0] * math.log(1e6))
        daily_volatility_ratio = 0.04 + 0.06 * draws[1]
        quote_volume_per_minute = math.exp(math.log(1e3) + draws[2] * math.log(1e2))
    else:
        price, daily_volatility_ratio, quote_volume_per_minute = known
    return _Profile(
        stream_keys=stream_keys,
        log_price=math.log(price),
        minute_volatility_ratio=daily_volatility_ratio / math.sqrt(_MINUTES_PER_DAY),
        quote_volume_per_minute=quote_volume_per_minute,
        trend_scale_minutes=_MINUTES_PER_DAY * (1.5 + 1.5 * float(draws[3])),
    )


def _base_candles(profile: _Profile, first_index: int, count: int, base_minutes: float) -> np.ndarray:
    """(count, 5) OHLCV of the base candles first_index .. first_index + count - 1."""
    points = np.arange(first_index, first_index + count + 1, dtype=np.int64)
    minutes = points.astype(np.float64) * base_minutes
    keys = profile.stream_keys
    minute_sigma = profile.minute_volatility_ratio
    daily_sigma = minute_sigma * math.sqrt(_MINUTES_PER_DAY)

    envelope_noise = _value_noise(keys[_Stream.ENVELOPE], minutes / _VOLATILITY_SCALE_MINUTES)
    burst = np.clip((envelope_noise - _BURST_THRESHOLD) / (1.0 - _BURST_THRESHOLD), 0.0, 1.0)
    envelope = np.exp(_CALM_LOG_LEVEL + _BURST_LOG_RANGE * burst)

    texture = _JITTER_RATIO * minute_sigma * math.sqrt(base_minutes) * _gaussian_pair(keys, _Stream.JITTER, points)[0]
    for octave, scale_minutes in enumerate(_OCTAVE_SCALES_MINUTES):
        amplitude = _OCTAVE_GAIN * minute_sigma * math.sqrt(scale_minutes)
        texture += amplitude * _value_noise(keys[_Stream.OCTAVE + octave], minutes / scale_minutes)

    log_price = (
        profile.log_price
        + _TREND_LEG_RATIO
        * daily_sigma
        * _value_noise(keys[_Stream.TREND], minutes / profile.trend_scale_minutes, smooth=False)
        + _DRIFT_RATIO * daily_sigma * _value_noise(keys[_Stream.DRIFT], minutes / _DRIFT_SCALE_MINUTES)
        + envelope * texture
    )
    price = np.exp(log_price)
    opens, closes = price[:-1], price[1:]
    candle_sigma = minute_sigma * math.sqrt(base_minutes) * envelope[:-1]
    wick_up, wick_down = _gaussian_pair(keys, _Stream.WICK, points[:-1])
    volume_noise = _gaussian_pair(keys, _Stream.VOLUME, points[:-1])[0]

    candles = np.empty((count, 5), dtype=np.float64)
    candles[:, 0] = opens
    candles[:, 1] = np.maximum(opens, closes) * np.exp(_WICK_RATIO * candle_sigma * np.abs(wick_up))
    candles[:, 2] = np.minimum(opens, closes) * np.exp(-_WICK_RATIO * candle_sigma * np.abs(wick_down))
    candles[:, 3] = closes
    move_ratio = np.abs(np.log(closes / opens)) / candle_sigma
    base_volume = profile.quote_volume_per_minute * base_minutes / math.exp(profile.log_price)
    candles[:, 4] = base_volume * envelope[:-1] ** 1.5 * np.exp(0.4 * volume_noise) * (1.0 + 0.3 * move_ratio)
    return candles


def _aggregated_candles(
    profile: _Profile, first_base_index: int, count: int, ratio: int, base_minutes: float
) -> np.ndarray:
    """(count, 5) OHLCV of candles made of `ratio` consecutive base candles each, in bounded chunks."""
    if ratio == 1:
        return _base_candles(profile, first_base_index, count, base_minutes)
    candles = np.empty((count, 5), dtype=np.float64)
    chunk_candles = max(1, _CHUNK_BASE_CANDLES // ratio)
    for start in range(0, count, chunk_candles):
        stop = min(count, start + chunk_candles)
        base = _base_candles(profile, first_base_index + start * ratio, (stop - start) * ratio, base_minutes)
        grouped = base.reshape(stop - start, ratio, 5)
        candles[start:stop, 0] = grouped[:, 0, 0]
        candles[start:stop, 1] = grouped[:, :, 1].max(axis=1)
        candles[start:stop, 2] = grouped[:, :, 2].min(axis=1)
        candles[start:stop, 3] = grouped[:, -1, 3]
        candles[start:stop, 4] = grouped[:, :, 4].sum(axis=1)
    return candles


def generated_symbols(count: int, *, quote: str = "USDT", first_number: int = 1) -> list[str]:
    """Scanner-like names "SIM0001/USDT", "SIM0002/USDT", ... for growing or rotating universes."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0; got {count!r}")
    if isinstance(first_number, bool) or not isinstance(first_number, int) or first_number < 0:
        raise ValueError(f"first_number must be an int >= 0; got {first_number!r}")
    return [validate_symbol(f"SIM{number:04d}/{quote}") for number in range(first_number, first_number + count)]


def _checked_symbols(symbols: Iterable[str]) -> tuple[str, ...]:
    """Well-formed symbols, duplicates dropped, first occurrence order kept."""
    if isinstance(symbols, str):
        raise ValueError(f"symbols must be an iterable of names, not one string; got {symbols!r}")
    return tuple(dict.fromkeys(validate_symbol(symbol) for symbol in symbols))


class SimulatedMarket:
    """Seeded, deterministic simulated exchange whose memory does not grow with time or universe."""

    __slots__ = (
        "_base_ms", "_elapsed_candles", "_listing_ms", "_seed", "_start_ms", "_stats", "_symbols", "_timeframes", "name"
    )

    name: str
    _symbols: tuple[str, ...]
    _timeframes: tuple[str, ...]
    _base_ms: int
    _seed: int
    _start_ms: int
    _listing_ms: int
    _elapsed_candles: int
    _stats: SourceStats

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        *,
        timeframes: Iterable[str] = ("1m", "5m", "1h"),
        base_timeframe: str = "1m",
        seed: int = 42,
        start_ms: int = DEFAULT_START_MS,
        history_candles: int | None = None,
    ) -> None:
        """`history_candles` base candles exist before `start_ms` (None: 200 of the largest timeframe)."""
        self.name = "simulated"
        self._symbols = _checked_symbols(DEFAULT_SYMBOLS if symbols is None else symbols)
        self._timeframes = validate_timeframes(timeframes, base_timeframe)
        self._base_ms = timeframe_ms(base_timeframe)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int; got {seed!r}")
        self._seed = seed
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms % self._base_ms:
            raise ValueError(f"start_ms must be an int multiple of base_timeframe {base_timeframe!r}; got {start_ms!r}")
        if history_candles is None:
            history_candles = DEFAULT_HISTORY_CANDLES * TIMEFRAME_MS[self._timeframes[-1]] // self._base_ms
        if isinstance(history_candles, bool) or not isinstance(history_candles, int) or history_candles < 0:
            raise ValueError(f"history_candles must be None or an int >= 0; got {history_candles!r}")
        self._start_ms = start_ms
        self._listing_ms = start_ms - history_candles * self._base_ms
        if self._listing_ms < 0:
            raise ValueError(
                f"history_candles must reach no earlier than 1970: at most {start_ms // self._base_ms}; "
                f"got {history_candles}"
            )
        self._elapsed_candles = 0
        self._stats = SourceStats()

    def __repr__(self) -> str:
        return (
            f"SimulatedMarket(seed={self._seed}, symbols={len(self._symbols)}, "
            f"timeframes={self._timeframes}, now_ms={self.now_ms})"
        )

    @property
    def now_ms(self) -> int:
        """Simulated clock: `start_ms` plus one base candle per `advance()`."""
        return self._start_ms + self._elapsed_candles * self._base_ms

    @property
    def timeframes(self) -> tuple[str, ...]:
        """Timeframes served, smallest (the base) first."""
        return self._timeframes

    def universe(self) -> list[str]:
        """Symbols currently listed, in the order they were added."""
        return list(self._symbols)

    def add_symbols(self, symbols: Iterable[str]) -> None:
        """List more symbols (already listed ones are ignored)."""
        self._symbols = tuple(dict.fromkeys((*self._symbols, *_checked_symbols(symbols))))
        logger.debug("simulated universe grew to %d symbols", len(self._symbols))

    def set_universe(self, symbols: Iterable[str]) -> None:
        """Replace the listed symbols, e.g. for a scanner's rotating top-N."""
        self._symbols = _checked_symbols(symbols)
        logger.debug("simulated universe set to %d symbols", len(self._symbols))

    def resume_at(self, now_ms: int) -> None:
        """Move the clock on to `now_ms` (rounded down to a base candle), e.g. to where a fleet's previous feeder
        stopped; a time not after the clock changes nothing (the clock never runs backwards)."""
        validate_since_ms(now_ms)
        self._elapsed_candles = max(self._elapsed_candles, (now_ms - self._start_ms) // self._base_ms)

    def advance(self) -> None:
        """Move the clock by one base candle."""
        self._elapsed_candles += 1
        self._stats.end_cycle()

    def stats(self) -> dict[str, Any]:
        """The common counters (`SourceStats.snapshot`); a simulated market makes no REST calls."""
        return self._stats.snapshot()

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 200
    ) -> pd.DataFrame:
        """Closed candles of any well-formed `symbol` (see module docstring for the window rule)."""
        validate_symbol(symbol)
        length_ms = checked_fetch(timeframe, self._timeframes, since_ms=since_ms, limit=limit)
        first_available = -(-self._listing_ms // length_ms)
        end = self.now_ms // length_ms
        if since_ms is None:
            start = max(first_available, end - limit)
        else:
            start = max(first_available, -(-since_ms // length_ms))
            end = min(end, start + limit)
        count = max(0, end - start)
        ratio = length_ms // self._base_ms
        candles = (
            _aggregated_candles(_profile(self._seed, symbol), start * ratio, count, ratio, self._base_ms / _MINUTE_MS)
            if count
            else np.empty((0, 5))
        )
        return ohlcv_frame(np.arange(start, start + count, dtype=np.int64) * length_ms, candles)

    async def close(self) -> None:
        """Nothing to release; present for the protocol."""
