"""The bot's HTTP server on 127.0.0.1 with a real bot behind it: /health, /api/status, /metrics, the page, the token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crypto_bot.memory import ConfigError
from crypto_bot.settings import parse_settings
from crypto_bot.status import MemoryHistory, Sample, assess_health

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.bot.status_support import Served, serve  # noqa: E402, F401 - serve is a fixture

TOKEN = "s3cret-status-token"


# ------------------------------------------------------------------- /health


def test_health_is_503_until_a_cycle_ended_then_200(serve: Callable[..., Served]) -> None:
    served = serve()
    status, body = served.json("/health")
    assert status == 503 and body["reasons"] == ["starting: no cycle has ended yet"]
    served.cycles()
    status, body = served.json("/health")
    assert status == 200 and body["status"] == "ok" and body["reasons"] == []


def test_health_is_503_naming_a_stalled_loop(serve: Callable[..., Served]) -> None:
    served = serve()
    served.cycles()
    served.clock.advance(3.0)  # three periods of the 1 s interval plus the cycle's own time: not yet stalled
    assert served.json("/health")[0] == 200
    served.clock.advance(60)
    status, body = served.json("/health")
    assert status == 503 and body["reasons"][0].startswith("stalled: the last cycle ended 63 s ago")


def test_health_is_503_at_critical_memory(serve: Callable[..., Served], system_memory_used: Callable[[float], None]) -> None:
    served = serve()
    served.cycles()
    system_memory_used(97.0)
    served.session.bot.memory.perform_maintenance()
    status, body = served.json("/health")
    assert status == 503 and any(reason.startswith("memory CRITICAL") for reason in body["reasons"])


def test_health_rules() -> None:
    healthy = dict(seconds_since_cycle=1.0, interval_seconds=1.0, longest_cycle_seconds=0.5, stall_intervals=3,
                   pressure_level="PRESSURE", exchange_down=None)
    assert assess_health(**healthy).healthy  # PRESSURE is the memory runtime doing its job, not a failure
    assert assess_health(**{**healthy, "seconds_since_cycle": 4.4}).healthy  # within 3 x 1.5 s
    assert not assess_health(**{**healthy, "seconds_since_cycle": 4.6}).healthy
    down = assess_health(**{**healthy, "exchange_down": "binance unavailable (503)"})
    assert down.status_code == 503 and down.reasons == ("exchange down: binance unavailable (503)",)


# --------------------------------------------------------------- /api/status


def test_api_status_reports_memory_caches_models_leak_recycles_and_trading(serve: Callable[..., Served]) -> None:
    served = serve()
    served.session.until_a_position_opens()
    served.cycles(2)
    bot = served.session.bot
    status, body = served.json("/api/status")
    assert status == 200
    memory = body["memory"]
    assert memory["reading"]["rss_bytes"] > 0 and memory["pressure_level"] == "NORMAL"
    assert {"limit_bytes", "usage_ratio", "unmanaged_bytes"} <= set(memory)
    assert {"psi_some_avg10", "oom_kills", "working_set_bytes"} <= set(memory["reading"])
    assert set(memory["caches"]) == {"df_cache", "regime_cache"}
    df_cache = memory["caches"]["df_cache"]
    assert df_cache["entries"] > 0 and df_cache["total_bytes"] > 0 and 0 < df_cache["hit_rate"] <= 1
    assert "size" in df_cache["evictions"] and "signal_model" in memory["models"]
    assert memory["leak"]["suspected"] is False
    assert body["bot"]["recycles"] == 0 and body["bot"]["cycle"] == bot.cycle and body["bot"]["cycles_this_process"] == 2
    trading = body["trading"]
    assert trading["equity"] == pytest.approx(bot.broker.equity(bot.marks()))
    assert {p["symbol"] for p in trading["open_positions"]} == {p.symbol for p in bot.broker.positions.values()}
    assert {"side", "entry_price", "unrealised_pnl"} <= set(trading["open_positions"][0])
    assert trading["recent_fills"][0]["action"] == "open"
    assert trading["market"]["source"] == "simulated" and trading["market"]["errors_last_cycle"] == 0
    assert len(body["history"]["time"]) == 2 and body["history"]["level"] == ["NORMAL", "NORMAL"]


def test_the_api_and_page_never_show_secrets(serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTO_BOT_TELEGRAM_TOKEN", "telegram-bot-token-9876")
    served = serve(
        token=TOKEN,
        notify={
            "webhook_url": "http://127.0.0.1:9/hook",
            "webhook_headers": {"Authorization": "Bearer webhook-secret-1234"},
            "telegram_chat_id": "42",
            "telegram_api_url": "http://127.0.0.1:9",
        },
    )
    served.cycles()
    answers = b"".join(served.get(path, TOKEN)[2] for path in ("/", "/static/app.js", "/api/status", "/health", "/metrics"))
    for secret in ("telegram-bot-token-9876", "webhook-secret-1234", TOKEN):
        assert secret.encode() not in answers


# ------------------------------------------------------------------- /metrics


def test_metrics_are_prometheus_text_prefixed_crypto_bot_with_process_and_python(serve: Callable[..., Served]) -> None:
    served = serve()
    served.cycles(2)
    status, headers, body = served.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    ours = {name for name in families if not name.startswith(("process_", "python_"))}
    assert all(name.startswith("crypto_bot_") for name in ours), ours
    expected = {
        "crypto_bot_cycle_duration_seconds", "crypto_bot_last_cycle_timestamp_seconds", "crypto_bot_equity",
        "crypto_bot_open_positions", "crypto_bot_trades", "crypto_bot_exchange_errors", "crypto_bot_memory_oom_kills",
        "crypto_bot_memory_psi_some_avg10_ratio", "crypto_bot_memory_leak_suspected", "crypto_bot_memory_rss_bytes",
        "crypto_bot_cache_size_bytes", "process_resident_memory_bytes", "python_info",
    }
    assert expected <= set(families), expected - set(families)
    histogram = families["crypto_bot_cycle_duration_seconds"]
    assert histogram.type == "histogram"
    assert [s.value for s in histogram.samples if s.name.endswith("_count")] == [2]
    assert families["crypto_bot_trades"].type == "counter"


# ------------------------------------------------------------ page and routes


def test_the_page_and_its_assets_are_served_by_the_bot_with_nothing_from_elsewhere(serve: Callable[..., Served]) -> None:
    served = serve()
    for path, kind in (("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, headers, body = served.get(path)
        assert status == 200 and headers["Content-Type"].startswith(kind)
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        text = body.decode()
        for reference in ('src="http', "href=\"http", "url(http", "import(", "fetch(\"http"):
            assert reference not in text


def test_an_unknown_path_is_404_and_a_post_405(serve: Callable[..., Served]) -> None:
    served = serve()
    assert served.get("/metrics/anything")[0] == 404
    assert served.get("/api/status", method="POST")[0] == 405


# ---------------------------------------------------------------------- token


def test_a_token_guards_api_health_and_metrics_but_not_the_page(serve: Callable[..., Served]) -> None:
    served = serve(token=TOKEN)
    served.cycles()
    for path in ("/api/status", "/health", "/metrics"):
        status, headers, _ = served.get(path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert served.get(path, token="wrong-token")[0] == 401
        assert served.get(path, token=TOKEN)[0] == 200
    assert served.get("/")[0] == 200


def test_a_non_loopback_bind_needs_the_token_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTO_BOT_SERVER_TOKEN", raising=False)
    with pytest.raises(ConfigError) as raised:
        parse_settings({"server": {"enabled": True, "address": "0.0.0.0"}})
    [problem] = raised.value.problems
    assert "server.address='0.0.0.0'" in problem and "CRYPTO_BOT_SERVER_TOKEN (server.token_variable)" in problem
    monkeypatch.setenv("CRYPTO_BOT_SERVER_TOKEN", TOKEN)
    assert parse_settings({"server": {"enabled": True, "address": "0.0.0.0"}}).server.address == "0.0.0.0"
    assert parse_settings({"server": {"enabled": True, "address": "::1"}}).server.loopback


def test_the_old_metrics_section_says_what_to_use_instead() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings({"metrics": {"enabled": True}})
    assert raised.value.problems[0].startswith("metrics is not a key of this version: use the server: section instead")


# -------------------------------------------------------------------- history


def sample(at: float, level: str = "NORMAL") -> Sample:
    return Sample(at, 100, 120, 10, level)


def test_history_keeps_only_its_window() -> None:
    history = MemoryHistory(window_seconds=60)
    for at in range(0, 200, 10):
        history.append(sample(at))
    assert history.to_dict()["time"] == [130, 140, 150, 160, 170, 180, 190]  # 60 s back from the newest


def test_history_halves_its_resolution_instead_of_growing_and_keeps_the_newest() -> None:
    history = MemoryHistory(window_seconds=10_000, max_points=10)
    for at in range(25):
        history.append(sample(at, "PRESSURE" if at == 24 else "NORMAL"))
    columns = history.to_dict()
    assert len(columns["time"]) <= 10 and columns["time"][-1] == 24 and columns["level"][-1] == "PRESSURE"
    assert columns["time"] == sorted(columns["time"])
