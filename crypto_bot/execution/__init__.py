"""Execution layer: positions, exit rules, risk policy, the paper broker and its SQLite journal.

Names are imported from their modules on first use (`crypto_bot.lazy_exports`): importing the package costs nothing.
"""

from crypto_bot.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "broker": ("PaperBroker",),
        "exits": ("ExitDecision", "ExitReason", "check_exit"),
        "journal": ("ForeignJournalError", "JournalError", "JournalLockedError", "SCHEMA_VERSION", "TradeJournal"),
        "position": ("Fill", "Position", "Trade"),
        "risk": ("EntryDecision", "RiskConfig", "RiskManager"),
    },
)
