"""The running bot's /api/status as lines a person reads (`crypto-bot status`)."""

from __future__ import annotations

from typing import Any

_MIB = 1024 * 1024


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / _MIB:.1f} MiB"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def status_lines(status: dict[str, Any]) -> list[str]:
    """Health, the process, memory with each cache and model, trading with each position and fill, the exchange."""
    bot, health, memory, trading = status["bot"], status["health"], status["memory"], status["trading"]
    reading = memory.get("reading", {})
    lines = [
        f"health          {health['status']}" + (f": {'; '.join(health['reasons'])}" if health["reasons"] else ""),
        f"bot             pid {bot['pid']}, cycle {bot['cycle']} ({bot['cycles_this_process']} in this process), "
        f"{bot['recycles']} recycles, up {bot['uptime_seconds']:.0f} s",
        f"memory          {memory.get('pressure_level', 'unmanaged')}, rss {_mib(reading.get('rss_bytes'))}, "
        f"working set {_mib(reading.get('working_set_bytes'))}, limit {_mib(memory.get('limit_bytes'))}, "
        f"usage {_ratio(memory.get('usage_ratio'))}, PSI {reading.get('psi_some_avg10', 'n/a')}, "
        f"OOM kills {reading.get('oom_kills', 'n/a')}",
        f"  caches        {_mib(memory.get('cache_bytes'))} in {memory.get('cache_entries', 0)} entries "
        f"(budget {_mib(memory.get('cache_budget_bytes'))})",
    ]
    for name, cache in memory.get("caches", {}).items():
        evictions = ", ".join(f"{cause} {count}" for cause, count in cache["evictions"].items() if count) or "none"
        lines.append(
            f"    {name:<14} {cache['entries']} entries, {_mib(cache['total_bytes'])}, hit rate {cache['hit_rate']:.0%}, "
            f"evictions: {evictions}"
        )
    for name, model in memory.get("models", {}).items():
        state = "loaded" if model["loaded"] else "unloaded"
        lines.append(f"  model         {name}: {state}, {_mib(model['size_bytes'])}")
    leak = memory.get("leak", {})
    lines.append(f"  leak          {'SUSPECTED' if leak.get('suspected') else 'none suspected'}")
    if trading:
        market = trading["market"]
        lines += [
            f"trading         equity {trading['equity']:.2f}, cash {trading['cash']:.2f}, realized PnL "
            f"{trading['realized_pnl']:.2f}, closed trades {trading['closed_trades']}",
            f"  open positions {len(trading['open_positions'])}",
            *(
                f"    {p['symbol']:<10} {p['side']:<5} {p['quantity']:.6g} @ {p['entry_price']:.6g}, mark "
                f"{p['mark_price']:.6g}, unrealised {p['unrealised_pnl']:+.2f}"
                for p in trading["open_positions"]
            ),
            f"  last fills    {len(trading['recent_fills'])}",
            *(
                f"    {f['action']:<5} {f['symbol']:<10} {f['side']:<5} {f['quantity']:.6g} @ {f['price']:.6g}"
                + ("" if f["pnl"] is None else f", pnl {f['pnl']:+.2f}")
                for f in trading["recent_fills"][:5]
            ),
            f"exchange        {market['source']}, REST calls last cycle {market['rest_calls_last_cycle']}, errors last "
            f"cycle {market['errors_last_cycle']}"
            + (f", DOWN: {market['exchange_down']}" if market["exchange_down"] else ""),
        ]
    else:
        lines.append("trading         no cycle has ended yet")
    return lines
