# Sourced by the other scripts: make .venv (once) and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
source "$ROOT/scripts/_system.sh"
# llama-cpp-python (in the "local" extra) compiles llama.cpp when it installs; the local
# server speaks with Flite's voices
case "${RTWIDGET_EXTRAS:-dev}" in *local*) need_packages cmake:cmake g++:g++ flite:flite ;; esac
# an active virtualenv that already runs this checkout (a developer's, or the tests') is used
# as it is; otherwise .venv, made on the first run
checkout='import os, rtwidget; print(os.path.realpath(os.path.dirname(rtwidget.__path__[0])))'
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$(python -c "$checkout" 2>/dev/null)" = "$(pwd -P)" ]; then
    return 0
fi
"$PY" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate

# llama.cpp, for the offline reply engine: only the library the engine loads (no multimodal
# library), on every core, with its progress shown; the full log stays in .venv/llama-build.log.
install_llama_cpp() {
    python -c "import llama_cpp" 2>/dev/null && return 0
    echo "== compiling llama.cpp for the offline replies (once; a few minutes on two cores)"
    local log=.venv/llama-build.log
    if ! CMAKE_ARGS="-DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        python -m pip install -v "llama-cpp-python>=0.3" 2>&1 | tee "$log" | python -u -c '
import re, sys
shown = -10
for line in sys.stdin:
    m = re.match(r"\s*\[(\d+)/(\d+)\]", line)
    if m:
        done, total = int(m[1]), int(m[2])
        pct = 100 * done // total
        if pct >= shown + 10 or done == total:
            shown = pct - pct % 10
            print(f"   llama.cpp {pct:3d}% ({done} of {total} steps)", flush=True)
'; then
        echo "llama.cpp did not build; the end of $log:" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${RTWIDGET_EXTRAS:-dev}"
if [ ! -f "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    case "${RTWIDGET_EXTRAS:-dev}" in *local*|*dev*) install_llama_cpp ;; esac
    echo "== installing rtwidget[${RTWIDGET_EXTRAS:-dev}] into .venv"
    python -m pip install --quiet -e ".[${RTWIDGET_EXTRAS:-dev}]"
    touch "$stamp"
fi
