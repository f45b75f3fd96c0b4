#!/usr/bin/env bash
# The real-browser tests' browser: Debian's chromium (no browser can be downloaded at run time,
# so never `playwright install`) and a font for its screenshots. Installed when missing; a
# no-op otherwise. Run by test.sh before pytest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CHROMIUM="${REFEX_CHROMIUM:-/usr/bin/chromium}"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
[[ -x "$CHROMIUM" && -f "$FONT" ]] && exit 0
if [[ "$(id -u)" != 0 ]]; then
  die "$CHROMIUM or the DejaVu fonts are missing: as root, apt-get install -y chromium fonts-dejavu-core"
fi
log "installing Debian's chromium and fonts-dejavu-core for the dashboard's browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
