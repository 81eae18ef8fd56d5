# Sourced by scripts/_venv.sh: `ensure_packages PKG...` installs the Debian packages that are missing.
#
# A PKG may list alternatives, `a|b`: the first one this release has is installed (package names
# change between releases: bookworm's libmimalloc2.0 is trixie's libmimalloc3). It installs
# with apt-get, quietly and without questions, when run as root on a machine with apt, and runs
# `apt-get update` only when something is missing. It never fails the caller: when it cannot
# install it prints a warning, and what needs the package says what it does without it (the
# allocator section's `auto` falls back to the next allocator and logs so). apt-get waits up to
# two minutes for the dpkg lock (`DPkg::Lock::Timeout`): another install may be running.

_package_installed() {
    local alternative
    for alternative in ${1//|/ }; do
        if [[ "$(dpkg-query -W -f='${Status}' "$alternative" 2>/dev/null)" == *" installed" ]]; then
            return 0
        fi
    done
    return 1
}

_package_candidate() {  # the first alternative the package lists know, after apt-get update
    local alternative policy
    for alternative in ${1//|/ }; do
        # Captured, not piped into grep -q: with pipefail an early grep exit would read as a failure.
        policy=$(apt-cache policy "$alternative" 2>/dev/null) || continue
        if [[ "$policy" == *"Candidate: "* && "$policy" != *"Candidate: (none)"* ]]; then
            echo "$alternative"
            return 0
        fi
    done
    return 1
}

ensure_packages() {
    local wanted candidate missing=() install=() unknown=()
    if ! command -v dpkg-query > /dev/null 2>&1; then
        echo "warning: not a Debian system; install these packages yourself if you want them: $*" >&2
        return 0
    fi
    for wanted in "$@"; do
        _package_installed "$wanted" || missing+=("$wanted")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null 2>&1; then
        echo "warning: Debian packages missing, and only root can install them: apt-get install ${missing[*]//|/ or }" >&2
        return 0
    fi
    echo "installing Debian packages: ${missing[*]//|/ or }" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get -o DPkg::Lock::Timeout=120 update -qq > /dev/null 2>&1; then
        echo "warning: apt-get update failed; Debian packages not installed: ${missing[*]//|/ or }" >&2
        return 0
    fi
    for wanted in "${missing[@]}"; do
        if candidate=$(_package_candidate "$wanted"); then
            install+=("$candidate")
        else
            unknown+=("$wanted")
        fi
    done
    if [ ${#unknown[@]} -gt 0 ]; then
        echo "warning: this Debian release has no package ${unknown[*]//|/ or }" >&2
    fi
    if [ ${#install[@]} -gt 0 ] &&
        ! apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${install[@]}" > /dev/null 2>&1; then
        echo "warning: apt-get install ${install[*]} failed; run it yourself to see why" >&2
    fi
    return 0
}
