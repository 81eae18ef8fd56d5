# Sourced by scripts/run and scripts/test: create .venv and install the project once per change
# to what the install builds from (pyproject.toml, setup.py, the C sources).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_packages.sh
# The allocators `crypto-bot run` preloads (allocator:), and the fleet's shared market-data tier (README: Fleet),
# whose tests start a redis-server of their own. One call: at most one apt-get update.
ensure_packages libjemalloc2 "libmimalloc2.0|libmimalloc3" redis-server
extras="$1"
venv=.venv
hash=$(cat pyproject.toml setup.py crypto_bot/memory/*.c | sha256sum | cut -c1-16)
stamp="$venv/.installed-$hash-$extras"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
    echo "setting up $venv (crypto-bot[$extras]); the log is $venv/install.log" >&2
    if ! { "$venv/bin/python" -m pip install --upgrade pip &&
           "$venv/bin/python" -m pip install -e ".[$extras]"; } > "$venv/install.log" 2>&1; then
        tail -n 40 "$venv/install.log" >&2
        echo "installation failed; see $venv/install.log" >&2
        exit 1
    fi
    find "$venv" -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
    touch "$stamp"
fi
