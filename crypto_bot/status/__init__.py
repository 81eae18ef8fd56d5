"""See the running bot: its HTTP server (status page, /api/status, /health, /metrics) and what it shows.

Modules: `config.py` (the `server:` section), `board.py` (what is shown, recorded each cycle),
`history.py` (the chart's readings), `health.py` (the /health verdict), `prometheus.py` (the
/metrics names), `server.py` (HTTP), `client.py` (the CLI reading a running bot), `static/` (the page).
Nothing here imports pandas or the trading stack: the bot is passed in.
"""

from .board import StatusBoard
from .client import BotUnreachable, config_token, fetch_status
from .config import ServerConfig, base_url, is_loopback
from .health import Health, assess_health
from .history import MemoryHistory, Sample

__all__ = [
    "BotUnreachable",
    "Health",
    "MemoryHistory",
    "Sample",
    "ServerConfig",
    "StatusBoard",
    "assess_health",
    "base_url",
    "config_token",
    "fetch_status",
    "is_loopback",
]
