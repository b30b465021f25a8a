# Sourced by the scripts: install missing Debian packages. Usage: need_packages cmd:package ...
need_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_install "${missing[@]}"
}

# apt_install package ...: install Debian packages (as root, or with sudo -n).
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing $* and no apt-get to install them; install them by hand" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "== installing $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}
