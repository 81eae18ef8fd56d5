"""Execution layer: positions, exit rules, risk policy, the paper broker and its SQLite journal.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

_EXPORTS = {
    "PaperBroker": "broker",
    "ExitDecision": "exits",
    "ExitReason": "exits",
    "check_exit": "exits",
    "ForeignJournalError": "journal",
    "JournalError": "journal",
    "JournalLockedError": "journal",
    "SCHEMA_VERSION": "journal",
    "TradeJournal": "journal",
    "Fill": "position",
    "Position": "position",
    "Trade": "position",
    "EntryDecision": "risk",
    "RiskConfig": "risk",
    "RiskManager": "risk",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
