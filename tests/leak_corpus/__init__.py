"""A corpus of realistic leaks, each a small strategy plugin, and the harness that runs them in the real bot.

Every case module holds one strategy plugin class (`crypto_bot.strategy.plugin`'s interface):
`signal(self, symbol, candles) -> float | None` once per symbol per cycle with the bot's candles
(`{timeframe: DataFrame}` for 1m, 5m and 1h), optional hooks such as `on_start(runtime)`, and
`close(self)`, which the bot calls when it stops, to stop what the plugin started and drop what it kept.
`STRATEGY` is the class; the bot loads it as `tests.leak_corpus.<case>:<class name>`.
The leaking line carries a `# LEAK` comment; `EXPECTED` says how the leak must be reported
("python": named by that line; "type": the line that allocated `GROWING_TYPE`'s instances;
"native": as unmanaged growth not explained by Python allocations), and `GROWING_TYPE`, where set,
is a type the census must show growing. `harness.py` runs a case as the plugin of a TradingBot,
one maintenance pass per cycle; `run.py` does so in a fresh interpreter; `clean.py` is the same work
without a leak.
"""

CASES = (
    "frames_dict",
    "fills_list",
    "lru_cache_method",
    "listener_closure",
    "concat_growth",
    "session_cookies",
    "numpy_module_cache",
    "gc_disabled_cycles",
    "thread_per_cycle",
    "native_malloc",
)
