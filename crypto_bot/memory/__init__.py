"""The memory subsystem: budgeted caches, honest sizing, container-aware pressure, model lifecycle.

Importable without any trading code. `MemoryManager` ties the pieces together; the
seed-compatible API lives in `crypto_bot.utils.enhanced_memory_manager`.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): `crypto_bot.memory.validation`
or `.recycle` alone does not load the manager.
"""

from crypto_bot.lazy_exports import lazy_exports

_EXPORTS = {
    "SharedBudget": "budget",
    "CacheEntry": "cache",
    "ManagedCache": "cache",
    "RemovalCause": "cache",
    "cache_backend": "cache",
    "ConfigError": "config",
    "MemoryConfig": "config",
    "LeakDetector": "leaks",
    "LeakReport": "leaks",
    "ReleaseWatch": "leaks",
    "diagnose": "leaks",
    "MaintenanceReport": "manager",
    "MemoryManager": "manager",
    "ModelRecord": "models",
    "ModelRegistry": "models",
    "ModelUnavailableError": "models",
    "PressureDecision": "pressure",
    "PressureLevel": "pressure",
    "PressurePolicy": "pressure",
    "MemoryProbe": "probe",
    "MemoryReading": "probe",
    "read_memory": "probe",
    "GcResult": "reclaim",
    "collect_garbage": "reclaim",
    "sizeof": "sizing",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
