"""crypto_bot: a runtime for long-running crypto trading bots that never leaks memory."""

__version__ = "0.1.0"
