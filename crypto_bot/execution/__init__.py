"""Execution layer: positions, exit rules, risk policy, the paper broker and its SQLite journal."""

from crypto_bot.execution.broker import PaperBroker
from crypto_bot.execution.exits import ExitDecision, ExitReason, check_exit
from crypto_bot.execution.journal import SCHEMA_VERSION, ForeignJournalError, JournalError, JournalLockedError, TradeJournal
from crypto_bot.execution.position import Fill, Position, Trade
from crypto_bot.execution.risk import EntryDecision, RiskConfig, RiskManager

__all__ = [
    "SCHEMA_VERSION",
    "EntryDecision",
    "ExitDecision",
    "ExitReason",
    "Fill",
    "ForeignJournalError",
    "JournalError",
    "JournalLockedError",
    "PaperBroker",
    "Position",
    "RiskConfig",
    "RiskManager",
    "Trade",
    "TradeJournal",
    "check_exit",
]
