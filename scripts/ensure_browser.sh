#!/usr/bin/env bash
# Make sure headless Chromium is installed, for the dashboard's browser test
# (tests/test_dashboard.py). `make test` runs this before the suite.
#
#   1. `chromium` is on PATH                      -> nothing to do;
#   2. we are root, or have passwordless sudo,
#      and apt-get exists                         -> apt-get install Debian's chromium;
#   3. otherwise                                  -> exit non-zero, saying what to install.
#
# Set INFERQ_NO_INSTALL=1 to forbid step 2. Running this again is harmless.
set -euo pipefail

say() { echo "ensure_browser: $*"; }

give_up() {
    cat >&2 <<EOF2
ensure_browser: Chromium is not available: $1

The dashboard test (tests/test_dashboard.py) drives headless Chromium. Install it with
  Debian/Ubuntu:  sudo apt-get install --no-install-recommends chromium
then run this again (or \`make test\`).
EOF2
    exit 1
}

# can_be_root, as_root
source "$(dirname "${BASH_SOURCE[0]}")/lib/root.sh"

if command -v chromium >/dev/null 2>&1; then
    say "chromium is installed ($(command -v chromium)); nothing to do"
    exit 0
fi
if [[ -n "${INFERQ_NO_INSTALL:-}" ]]; then
    give_up "chromium is not on PATH and INFERQ_NO_INSTALL is set"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    give_up "chromium is not on PATH and there is no apt-get to install it"
fi
if ! can_be_root; then
    give_up "chromium is not on PATH, and installing it needs root or passwordless sudo"
fi

say "running apt-get update"
as_root apt-get update -q || give_up "apt-get update failed"
say "installing chromium with apt-get"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium ||
    give_up "apt-get could not install chromium"
command -v chromium >/dev/null 2>&1 || give_up "apt-get installed chromium, but it is not on PATH"
say "chromium installed ($(command -v chromium))"
