# Sourced by the other scripts: make .venv (once) and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
source "$ROOT/scripts/_system.sh"
# llama-cpp-python (in the "local" extra) compiles llama.cpp when it installs; the local
# server speaks with Flite's voices
case "${RTWIDGET_EXTRAS:-dev}" in *local*) need_packages cmake:cmake g++:g++ flite:flite ;; esac
"$PY" -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${RTWIDGET_EXTRAS:-dev}"
if [ ! -f "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    echo "== installing rtwidget[${RTWIDGET_EXTRAS:-dev}] into .venv (llama.cpp takes a while)"
    python -m pip install --quiet -e ".[${RTWIDGET_EXTRAS:-dev}]"
    touch "$stamp"
fi
