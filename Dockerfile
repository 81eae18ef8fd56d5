# crypto-bot in a container: paper trading on the simulated market, its journal and model in a volume.
#
#   docker build -t crypto-bot .
#   docker run -d --name crypto-bot --memory 256m -v crypto-bot-data:/srv/crypto-bot/data crypto-bot
#
# or compose.yaml beside this file (memory limit, restart policy, log rotation, optional Prometheus).
# PYTHON_IMAGE is any Debian-based image with python3 (3.11+) and its venv module: the official slim image by
# default; the proof test builds on a stand-in made from Debian's packages where Docker Hub is out of reach.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a compiler builds the wheel with the C cache store, installed into a venv with the runtime's deps
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY crypto_bot ./crypto_bot
RUN python3 -m venv /opt/crypto-bot \
 && /opt/crypto-bot/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/crypto-bot/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/crypto-bot/bin/pip install --no-cache-dir "$(ls /wheels/crypto_bot-*.whl)[metrics]" \
 && /opt/crypto-bot/bin/python -c "import crypto_bot.memory._cachecore"

# ---- runtime: no compiler, no build tools; the venv, the config and a user without privileges
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /srv/crypto-bot --shell /usr/sbin/nologin crypto-bot \
 && mkdir -p /srv/crypto-bot/data \
 && chown crypto-bot:crypto-bot /srv/crypto-bot/data
COPY --from=build /opt/crypto-bot /opt/crypto-bot
COPY production_config_enhanced.yaml /srv/crypto-bot/config.yaml
# The status server's port (server.port): what the HEALTHCHECK asks for GET /health, with the bearer token from
# CRYPTO_BOT_SERVER_TOKEN when the server has one.
ENV PATH=/opt/crypto-bot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CRYPTO_BOT_HEALTH_PORT=9108
WORKDIR /srv/crypto-bot
# data/journal.sqlite and data/signal_model.npz (relative to the workdir in the config) live here
VOLUME ["/srv/crypto-bot/data"]
USER crypto-bot
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "crypto_bot.healthcheck"]
# Exec form: crypto-bot is PID 1 and gets SIGTERM itself (docker stop): its supervisor passes it to the bot,
# which finishes the phase, flushes the journal and exits 0. The allocator (allocator.name: auto, glibc with
# two arenas) is set by the supervisor for the bot's process.
ENTRYPOINT ["crypto-bot"]
CMD ["run", "--config", "config.yaml", "--interval", "60"]
