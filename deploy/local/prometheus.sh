#!/usr/bin/env bash
# The Prometheus e2e test's tools: Debian's prometheus server and promtool (the test checks
# deploy/prometheus/ with promtool and runs a real server against the services; nothing is
# downloaded at run time). Installed when missing; a no-op otherwise. Run by test.sh before
# pytest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0
if [[ "$(id -u)" != 0 ]]; then
  die "prometheus or promtool is missing: as root, apt-get install -y --no-install-recommends prometheus"
fi
log "installing Debian's prometheus (server and promtool) for the Prometheus e2e test"
apt-get update -qq
# The package's post-install starts a server only where systemd runs; the test starts its own.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
