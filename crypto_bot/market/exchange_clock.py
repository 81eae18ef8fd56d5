"""The exchange's clock as this machine estimates it: the local wall clock plus a tracked offset.

Covers `ExchangeClock`, pure bookkeeping that `CcxtMarket` feeds: the exchange's own time (ccxt's
`fetch_time`, sampled with the local send and receive times), and every candle it returns (a
candle that has opened proves the exchange's clock has reached its open). Not covered: the HTTP
calls (`ccxt_market`) or which candles count as closed (`source.visible_slice`, given `now_ms`).

Why: whether a candle has closed is the exchange's decision. A machine clock 30 s ahead would take
the still-open candle for closed (look-ahead: its close is not final); one behind would wait a
candle longer than needed. The server time fixes the offset both ways; a candle's open only ever
raises it (the exchange is at least there), which covers exchanges without a time endpoint when
the local clock is behind, and not when it is ahead: there, only the server time helps.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_RESYNC_MS = 3_600_000
"""How long a server-time sample is trusted before the next fetch samples again (clocks drift slowly)."""


class ExchangeClock:
    """`now_ms()` is the local wall clock plus `offset_ms`; `synced` once a server time was recorded."""

    __slots__ = ("_local_ms", "_resync_ms", "_sampled_at_ms", "_synced_at_ms", "offset_ms")

    offset_ms: int
    _local_ms: Callable[[], int]
    _resync_ms: int
    _synced_at_ms: int | None
    _sampled_at_ms: int | None

    def __init__(self, local_ms: Callable[[], int], *, resync_ms: int = DEFAULT_RESYNC_MS) -> None:
        self._local_ms = local_ms
        self._resync_ms = resync_ms
        self._synced_at_ms = None  # the last server time recorded
        self._sampled_at_ms = None  # the last attempt, recorded or failed
        self.offset_ms = 0

    def now_ms(self) -> int:
        """The exchange's time, estimated."""
        return self._local_ms() + self.offset_ms

    def local_ms(self) -> int:
        """The machine's wall clock (for sampling a round trip)."""
        return self._local_ms()

    @property
    def synced(self) -> bool:
        """Whether a server time has been recorded."""
        return self._synced_at_ms is not None

    def needs_sync(self) -> bool:
        """Never sampled, or the last sample (recorded or failed) is older than the resync period."""
        return self._sampled_at_ms is None or self._local_ms() - self._sampled_at_ms >= self._resync_ms

    def record_server_time(self, server_ms: int, sent_ms: int, received_ms: int) -> None:
        """The exchange said `server_ms` between the local `sent_ms` and `received_ms`: assume the middle."""
        self.offset_ms = int(server_ms) - (sent_ms + received_ms) // 2
        self._synced_at_ms = self._sampled_at_ms = received_ms

    def record_failed_sync(self) -> None:
        """The server time could not be read: keep the offset, try again after the resync period."""
        self._sampled_at_ms = self._local_ms()

    def record_candle_open(self, open_ms: int) -> None:
        """The exchange returned a candle opening at `open_ms`, so its clock is at least there."""
        behind_ms = open_ms - self.now_ms()
        if behind_ms > 0:
            self.offset_ms += behind_ms
