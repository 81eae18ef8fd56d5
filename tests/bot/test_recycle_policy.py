from crypto_bot.memory import LeakDetector, MemoryConfig, MemoryManager, MemoryProbe
from crypto_bot.memory.recycle import RecycleDecision, RecyclePolicy, minutes_to_limit

MIB = 1024 * 1024


def started(pressure_passes: int, horizon_minutes: float) -> RecyclePolicy:
    """A policy that has seen the process's first cycle end well below PRESSURE."""
    policy = RecyclePolicy(pressure_passes=pressure_passes, horizon_minutes=horizon_minutes)
    assert not policy.observe(False, 40 * MIB, 100 * MIB, None).recycle
    return policy


def test_forecast_is_headroom_over_slope_in_minutes():
    assert minutes_to_limit(100 * MIB, 160 * MIB, 120 * MIB) == 30.0


def test_no_forecast_without_limit_or_growth():
    assert minutes_to_limit(100 * MIB, None, 120 * MIB) is None
    assert minutes_to_limit(100 * MIB, 160 * MIB, 0.0) is None
    assert minutes_to_limit(100 * MIB, 160 * MIB, -5.0) is None


def test_usage_over_the_limit_forecasts_zero_minutes():
    assert minutes_to_limit(200 * MIB, 160 * MIB, 1.0) == 0.0


def test_recycles_after_k_consecutive_passes_at_pressure():
    policy = started(pressure_passes=3, horizon_minutes=10)
    decisions = [policy.observe(True, 90 * MIB, 100 * MIB, None) for _ in range(3)]
    assert [d.recycle for d in decisions] == [False, False, True]
    assert "90.0 MiB" in decisions[-1].reason and "100.0 MiB" in decisions[-1].reason


def test_a_pass_below_pressure_resets_the_count():
    policy = started(pressure_passes=2, horizon_minutes=10)
    policy.observe(True, 90 * MIB, 100 * MIB, None)
    policy.observe(False, 50 * MIB, 100 * MIB, None)
    assert not policy.observe(True, 90 * MIB, 100 * MIB, None).recycle


def test_recycles_when_the_leak_forecast_is_within_the_horizon():
    policy = started(pressure_passes=3, horizon_minutes=30)
    decision = policy.observe(False, 100 * MIB, 160 * MIB, 150 * MIB)
    assert decision.recycle
    assert "24.0 min" in decision.reason and "slope 150.0 MiB/h" in decision.reason


def test_keeps_running_when_the_forecast_is_beyond_the_horizon():
    policy = started(pressure_passes=3, horizon_minutes=30)
    assert not policy.observe(False, 100 * MIB, 160 * MIB, 60 * MIB).recycle


def test_a_process_at_pressure_from_its_first_observation_is_never_recycled_and_says_why_once():
    policy = RecyclePolicy(pressure_passes=1, horizon_minutes=30)
    first = policy.observe(True, 180 * MIB, 50 * MIB, None)
    assert not first.recycle and "fresh process is at PRESSURE" in first.reason and "50.0 MiB" in first.reason
    later = [policy.observe(True, 180 * MIB, 50 * MIB, 100 * MIB) for _ in range(5)]
    assert not any(d.recycle or d.reason for d in later)


def test_a_process_that_started_below_pressure_is_recycled_when_it_reaches_it():
    policy = RecyclePolicy(pressure_passes=1, horizon_minutes=30)
    assert not policy.observe(False, 60 * MIB, 100 * MIB, None).recycle
    assert policy.observe(True, 90 * MIB, 100 * MIB, None).recycle


def decision_for_a_leaking_manager(limit_mb: float) -> RecycleDecision:
    """The decision for a real MemoryManager under `limit_mb` whose leak detector confirmed 600 MiB/hour."""
    manager = MemoryManager(MemoryConfig(enable_background_cleanup=False, process_memory_limit_mb=limit_mb))
    try:
        manager.perform_maintenance()
        manager.leaks = LeakDetector(window_size=3, windows_to_confirm=1)
        for minute in range(3):
            manager.leaks.observe(minute * 60.0, 100 * MIB + minute * 10 * MIB, 0)
        return RecyclePolicy(pressure_passes=3, horizon_minutes=30).observe_manager(manager)
    finally:
        manager.stop()


def test_a_managers_confirmed_leak_that_reaches_its_limit_within_the_horizon_recycles_it():
    # The limit 200 MiB above what the process uses now: NORMAL, and 20 minutes away at 600 MiB/hour.
    decision = decision_for_a_leaking_manager(MemoryProbe().read().rss_bytes / MIB + 200)
    assert decision.recycle, decision
    assert "leak trend reaches the limit" in decision.reason and "slope 600.0 MiB/h" in decision.reason


def test_a_managers_leak_beyond_the_horizon_does_not_recycle_it():
    assert not decision_for_a_leaking_manager(64 * 1024).recycle
