"""The memory subsystem: budgeted caches, honest sizing, container-aware pressure, model lifecycle.

Importable without any trading code. `MemoryManager` ties the pieces together; the
seed-compatible API lives in `crypto_bot.utils.enhanced_memory_manager`.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): `crypto_bot.memory.validation`
or `.recycle` alone does not load the manager.
"""

from crypto_bot.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "budget": ("SharedBudget",),
        "cache": ("CacheEntry", "ManagedCache", "RemovalCause", "cache_backend"),
        "config": ("ConfigError", "MemoryConfig"),
        "leaks": ("LeakDetector", "LeakReport", "ReleaseWatch", "diagnose"),
        "manager": ("MaintenanceReport", "MemoryManager"),
        "models": ("ModelRecord", "ModelRegistry", "ModelUnavailableError"),
        "pressure": ("PressureDecision", "PressureLevel", "PressurePolicy"),
        "probe": ("MemoryProbe", "MemoryReading", "read_memory"),
        "reclaim": ("GcResult", "collect_garbage"),
        "sizing": ("sizeof",),
    },
)
