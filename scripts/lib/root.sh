# Shared by the ensure_* scripts: root privileges for apt-get and Debian's servers — we are
# root, or have passwordless sudo. Never prompts for a password: make may run us unattended.

can_be_root() {
    [[ $(id -u) == 0 ]] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    else
        sudo -n "$@"
    fi
}
