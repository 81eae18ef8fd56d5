# Sourced by scripts/run and scripts/test: `source scripts/_venv.sh VENV EXTRAS [PACKAGE...]` creates VENV and
# installs the project with EXTRAS into it, once per change to what the install builds from (pyproject.toml,
# setup.py, the C sources). The runtime (.venv-run, `metrics`) and the tests (.venv, `dev`) live apart:
# a test library in the bot's venv costs the bot memory (pandas imports pyarrow whenever it is there).
# Debian packages: the allocators `crypto-bot run` preloads (allocator:), and the caller's PACKAGEs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_packages.sh
venv="$1"
extras="$2"
shift 2
ensure_packages libjemalloc2 "libmimalloc2.0|libmimalloc3" "$@"  # one call: at most one apt-get update
hash=$(cat pyproject.toml setup.py crypto_bot/memory/*.c | sha256sum | cut -c1-16)
stamp="$venv/.installed-$hash-$extras"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
    echo "setting up $venv (crypto-bot[$extras], about a minute the first time); the full log is $venv/install.log" >&2
    # pip's own lines go to the log; what it is collecting, building and installing is shown as it happens.
    if ! { "$venv/bin/python" -m pip install --upgrade pip &&
           "$venv/bin/python" -m pip install -e ".[$extras]"; } 2>&1 | tee "$venv/install.log" |
           { grep --line-buffered -E '^(Collecting|Building|Installing|Successfully installed)' || true; } |
           cut -c1-100 | sed -u 's/^/  /' >&2; then
        tail -n 40 "$venv/install.log" >&2
        echo "installation failed; see $venv/install.log" >&2
        exit 1
    fi
    find "$venv" -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
    touch "$stamp"
fi
