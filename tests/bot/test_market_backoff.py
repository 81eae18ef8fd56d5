"""RequestGate and BackoffPolicy: pauses, doubling with jitter, Retry-After, the probe after an outage."""

from __future__ import annotations

import asyncio
import random

import pytest

from crypto_bot.market import BackoffPolicy, ExchangeUnavailable, NetworkFailure, RateLimited
from crypto_bot.market.backoff import RequestGate, jittered
from tests.fakes import FakeClock


class Sleeper:
    """An async sleep that moves `clock` instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
def sleeper(clock: FakeClock) -> Sleeper:
    return Sleeper(clock)


def gate(clock: FakeClock, sleeper: Sleeper, **policy: float) -> RequestGate:
    return RequestGate(
        BackoffPolicy(**policy), rate_limit_seconds=0.05, monotonic=clock, sleep=sleeper, rng=random.Random(5)
    )


def test_equal_jitter_draws_from_the_upper_half():
    rng = random.Random(1)
    draws = [jittered(10.0, rng) for _ in range(1000)]
    assert 5.0 <= min(draws) and max(draws) <= 10.0
    assert min(draws) < 5.5 and max(draws) > 9.5


def test_doubling_is_capped_at_the_longest_pause():
    policy = BackoffPolicy(max_pause_seconds=300)
    assert [policy.doubled(5, failures) for failures in (1, 2, 3, 7, 1000)] == [5, 10, 20, 300, 300]


@pytest.mark.parametrize(
    ("field", "value"), [("rate_limit_retries", -1), ("network_retries", 1.5), ("outage_pause_seconds", 0)]
)
def test_a_policy_with_impossible_numbers_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        BackoffPolicy(**{field: value})


def test_an_open_gate_admits_at_once(clock, sleeper):
    assert asyncio.run(gate(clock, sleeper).admit()) is False
    assert sleeper.slept == []


def test_a_short_rate_limit_pause_is_slept_inside_the_fetch(clock, sleeper):
    requests = gate(clock, sleeper)
    requests.rate_limited(4.0, "binance rate limit")
    assert asyncio.run(requests.admit()) is False
    assert sleeper.slept == [pytest.approx(4.0)]


def test_retry_after_is_honoured_even_beyond_the_longest_pause(clock, sleeper):
    requests = gate(clock, sleeper, max_pause_seconds=60)
    assert requests.rate_limited(600.0, "binance rate limit") == 600.0
    with pytest.raises(RateLimited, match="binance rate limit; requests paused for another 600.0 s") as error:
        asyncio.run(requests.admit(symbol="BTC/USDT", timeframe="1m"))
    assert error.value.retry_after_seconds == pytest.approx(600.0)
    assert (error.value.symbol, error.value.timeframe) == ("BTC/USDT", "1m")


def test_consecutive_rate_limits_double_the_wait_and_an_answer_starts_over(clock, sleeper):
    requests = gate(clock, sleeper)
    waits = [requests.rate_limited(None, "limit") for _ in range(4)]
    for hits, wait in enumerate(waits):
        assert 0.05 * 2**hits / 2 <= wait <= 0.05 * 2**hits
    requests.answered()
    assert requests.rate_limited(None, "limit") <= 0.05


def test_an_outage_fails_requests_at_once_until_its_pause_ends(clock, sleeper):
    requests = gate(clock, sleeper, outage_pause_seconds=5)
    pause = requests.unavailable("binance unavailable (ExchangeNotAvailable)")
    assert 2.5 <= pause <= 5.0
    with pytest.raises(ExchangeUnavailable, match="binance unavailable"):
        asyncio.run(requests.admit())
    assert sleeper.slept == []  # an outage is never slept inside a fetch
    assert requests.pause_reason == "binance unavailable (ExchangeNotAvailable)"
    clock.advance(pause)
    assert requests.pause_reason is None


def test_a_request_out_of_network_retries_pauses_with_its_own_error(clock, sleeper):
    requests = gate(clock, sleeper)
    requests.unavailable("binance: no answer (RequestTimeout)", NetworkFailure)
    with pytest.raises(NetworkFailure):
        asyncio.run(requests.admit())


def test_consecutive_outages_double_the_pause(clock, sleeper):
    requests = gate(clock, sleeper, outage_pause_seconds=5, max_pause_seconds=300)
    pauses = []
    for outage in range(8):
        pauses.append(requests.unavailable("down"))
        clock.advance(pauses[-1])
    for outage, pause in enumerate(pauses):
        expected = min(300, 5 * 2**outage)
        assert expected / 2 <= pause <= expected


def test_after_an_outage_one_probe_goes_and_the_others_wait_for_its_answer(clock, sleeper):
    requests = gate(clock, sleeper)
    clock.advance(requests.unavailable("down"))

    async def scenario() -> list[object]:
        order: list[object] = []

        async def request(name: str) -> None:
            probe = await requests.admit()
            order.append((name, probe))
            if probe:
                await asyncio.sleep(0)  # the probe's answer takes a while
                order.append("answered")
                requests.answered()
                requests.end_probe()

        await asyncio.gather(request("a"), request("b"), request("c"))
        return order

    assert asyncio.run(scenario()) == [("a", True), "answered", ("b", False), ("c", False)]


def test_a_failed_probe_fails_the_waiting_requests_without_sending_them(clock, sleeper):
    requests = gate(clock, sleeper)
    clock.advance(requests.unavailable("down"))

    async def scenario() -> list[object]:
        async def probe() -> bool:
            admitted = await requests.admit()
            await asyncio.sleep(0)
            requests.unavailable("still down")
            requests.end_probe()
            return admitted

        async def other() -> object:
            try:
                return await requests.admit()
            except ExchangeUnavailable as error:
                return error

        return await asyncio.gather(probe(), other())

    admitted, other = asyncio.run(scenario())
    assert admitted is True
    assert isinstance(other, ExchangeUnavailable) and "still down" in str(other)
