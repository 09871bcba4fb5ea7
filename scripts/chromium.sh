#!/usr/bin/env bash
# Debian's Chromium for the console's browser tests (driven by Playwright through
# executable_path: Playwright never downloads a browser here).
#
#   scripts/chromium.sh path      print the executable, installing chromium (and the fonts the
#                                 screenshots need) from the Debian packages if it is missing
#
# Environment: ONCEONLY_CHROMIUM (an executable to use instead).
set -euo pipefail

cd "$(dirname "$0")/.."
SCRIPT=chromium.sh
ROOT_HINT="Chromium is not installed and installing it needs root: run 'apt-get install chromium fonts-liberation fonts-dejavu-core' as root, or set ONCEONLY_CHROMIUM"
# shellcheck source=scripts/lib.sh
. "scripts/lib.sh"

find_chromium() {
  local candidate
  for candidate in "${ONCEONLY_CHROMIUM:-}" /usr/lib/chromium/chromium /usr/bin/chromium; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

case "${1:-path}" in
path)
  if ! find_chromium >/dev/null; then
    command -v apt-get >/dev/null 2>&1 || die "no chromium and no apt-get to install it: set ONCEONLY_CHROMIUM"
    say "installing chromium from the Debian packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation fonts-dejavu-core >&2
  fi
  find_chromium || die "chromium was installed but no executable was found"
  ;;
*)
  die "usage: scripts/chromium.sh path"
  ;;
esac
