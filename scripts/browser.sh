#!/usr/bin/env bash
# Installs the headless browser the console's browser tests drive (tests/browser.rs):
# Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver), when
# missing. Needs root (Debian). Idempotent. Never fails the caller: when they cannot be
# installed it says why, and the browser tests fail under CI=true (skip elsewhere).
# Usage: scripts/browser.sh
set -uo pipefail

say() { echo "browser: $*"; }

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  say "chromium and chromedriver are installed"
  exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  say "chromium or chromedriver is missing and cannot be installed here (needs root and apt-get)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
say "apt-get install -y chromium chromium-driver"
if ! { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
  say "could not install chromium and chromium-driver"
  exit 0
fi
# The package cache is not needed once they are installed.
apt-get clean
say "installed $(/usr/bin/chromium --version 2>/dev/null)"
