"""The memory subsystem: budgeted caches, honest sizing, container-aware pressure, model lifecycle.

Importable without any trading code. `MemoryManager` ties the pieces together; the
seed-compatible API lives in `crypto_bot.utils.enhanced_memory_manager`.
"""

from .budget import SharedBudget
from .cache import CacheEntry, ManagedCache, RemovalCause, cache_backend
from .config import ConfigError, MemoryConfig
from .leaks import LeakDetector, LeakReport, ReleaseWatch, diagnose
from .manager import MaintenanceReport, MemoryManager
from .models import ModelRecord, ModelRegistry, ModelUnavailableError
from .pressure import PressureDecision, PressureLevel, PressurePolicy
from .probe import MemoryProbe, MemoryReading, read_memory
from .reclaim import GcResult, collect_garbage
from .sizing import sizeof

__all__ = [
    "CacheEntry",
    "ConfigError",
    "GcResult",
    "LeakDetector",
    "LeakReport",
    "MaintenanceReport",
    "ManagedCache",
    "MemoryConfig",
    "MemoryManager",
    "MemoryProbe",
    "MemoryReading",
    "ModelRecord",
    "ModelRegistry",
    "ModelUnavailableError",
    "PressureDecision",
    "PressureLevel",
    "PressurePolicy",
    "ReleaseWatch",
    "RemovalCause",
    "SharedBudget",
    "cache_backend",
    "collect_garbage",
    "diagnose",
    "read_memory",
    "sizeof",
]
