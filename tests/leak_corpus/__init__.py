"""A corpus of realistic leaks, each a small strategy-shaped module, and the harness that runs them.

Every case module holds one class shaped like a strategy plugin (issue 12, section 1):
`signal(self, symbol, candles) -> float | None` once per symbol per cycle, `on_cycle_end(self)`
once per cycle, and `close(self)` to undo what it leaked (tests and benches run in one process).
The leaking line carries a `# LEAK` comment; `EXPECTED` says how the leak must be reported
("python": named by that line; "native": as unmanaged growth not explained by Python
allocations), and `GROWING_TYPE`, where set, is a type the census must show growing.
`harness.py` runs a case under a MemoryManager, one maintenance pass per cycle; `clean.py` is the
same work without a leak.
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
