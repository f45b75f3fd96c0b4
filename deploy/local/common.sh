# Shared settings for the local (Docker-free) infrastructure scripts. Source it; do not run it.
# Every value can be overridden from the environment so two checkouts can run side by side.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${REFEX_LOCAL_DIR:-$REPO_ROOT/.local}"
# This checkout's code first, whichever checkout the venv's editable install points at (git
# worktrees can share one .venv): the `refex` entry point and every Python process started here.
case ":${PYTHONPATH:-}:" in
  *":$REPO_ROOT:"*) ;;
  *) export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" ;;
esac

# REFEX_KAFKA_BROKERS=3: a replicated cluster of three combined broker+controller nodes
# (decision 34), node N on client port REFEX_KAFKA_PORT+N-1 and controller port
# REFEX_KAFKA_CONTROLLER_PORT+N-1; every topic on three of them (REFEX_KAFKA_REPLICATION_FACTOR).
# Default 1: one node, as make run and make test have always had.
KAFKA_BROKERS="${REFEX_KAFKA_BROKERS:-1}"
[[ "$KAFKA_BROKERS" =~ ^[1-9]$ ]] || { echo "REFEX_KAFKA_BROKERS must be 1 to 9, not $KAFKA_BROKERS" >&2; exit 2; }
KAFKA_PORT="${REFEX_KAFKA_PORT:-19092}"
# The controllers' ports follow the client ports' range (19093 for one node, as before).
KAFKA_CONTROLLER_PORT="${REFEX_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + KAFKA_BROKERS))}"
if (( KAFKA_CONTROLLER_PORT < KAFKA_PORT + KAFKA_BROKERS && KAFKA_PORT < KAFKA_CONTROLLER_PORT + KAFKA_BROKERS )); then
  echo "the client ports $KAFKA_PORT.. and the controller ports $KAFKA_CONTROLLER_PORT.. of $KAFKA_BROKERS brokers overlap: set REFEX_KAFKA_CONTROLLER_PORT" >&2
  exit 2
fi
# min(brokers, 3): three copies is what a lost broker and a restart at once leave writable.
KAFKA_REPLICATION_FACTOR="${REFEX_KAFKA_REPLICATION_FACTOR:-$(( KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3 ))}"
# Each node's heap: three of 512 MB fit beside the services on a 2-core, 24 GB machine.
KAFKA_HEAP="${REFEX_KAFKA_HEAP:-512m}"
KAFKA_DIR="$LOCAL_DIR/kafka"
# The jar cache is shared by every LOCAL_DIR (make run and make test use different ones).
KAFKA_LIBS="${REFEX_KAFKA_LIBS:-$REPO_ROOT/.local/kafka-libs}"
# One node keeps the layout it always had; a cluster's node N lives in kafka/node-N/.
kafka_node_dir() { if (( KAFKA_BROKERS == 1 )); then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR/node-$1"; fi; }
# REFEX_KAFKA_NETNS=1 (root only; the cluster chaos run): each node in a network namespace of
# its own, at $KAFKA_NETNS_SUBNET.N, joined to this namespace by a veth pair on one bridge
# ($KAFKA_NETNS_SUBNET.254 here), so cutting a node's link (kafka.sh cut N) partitions it from
# the other nodes and from every client at once (decision 34).
KAFKA_NETNS="${REFEX_KAFKA_NETNS:-0}"
KAFKA_NETNS_SUBNET="${REFEX_KAFKA_NETNS_SUBNET:-10.77.0}"
# Interface and namespace names of this folder's cluster (interface names: 15 characters).
KAFKA_NETNS_TAG="$(printf '%s' "$LOCAL_DIR" | sha256sum | cut -c1-4)"
if [[ "$KAFKA_NETNS" == 1 ]] && (( KAFKA_BROKERS < 2 )); then
  echo "REFEX_KAFKA_NETNS=1 needs a cluster (REFEX_KAFKA_BROKERS=3)" >&2; exit 2
fi
kafka_node_host() { if [[ "$KAFKA_NETNS" == 1 ]]; then echo "$KAFKA_NETNS_SUBNET.$1"; else echo 127.0.0.1; fi; }
kafka_node_netns() { echo "refex-$KAFKA_NETNS_TAG-$1"; }
kafka_node_veth() { echo "rfx${KAFKA_NETNS_TAG}v$1"; }
kafka_node_port() { echo $((KAFKA_PORT + $1 - 1)); }
kafka_node_controller_port() { echo $((KAFKA_CONTROLLER_PORT + $1 - 1)); }
# What clients are given: every node, so any one of them answers the first metadata request.
KAFKA_BOOTSTRAP="$(kafka_node_host 1):$KAFKA_PORT"
for ((n = 2; n <= KAFKA_BROKERS; n++)); do KAFKA_BOOTSTRAP+=",$(kafka_node_host "$n"):$((KAFKA_PORT + n - 1))"; done
# The names the broker's certificate carries: loopback, and each node's own address in
# namespaces (clients check the address they connect to against it).
KAFKA_SAN="DNS:localhost,IP:127.0.0.1"
if [[ "$KAFKA_NETNS" == 1 ]]; then
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do KAFKA_SAN+=",IP:$(kafka_node_host "$n")"; done
fi
KAFKA_DATA="$(kafka_node_dir 1)/data"
KAFKA_PID="$(kafka_node_dir 1)/broker.pid"
KAFKA_LOG="$(kafka_node_dir 1)/broker.log"
KAFKA_CREDENTIALS="$LOCAL_DIR/kafka-credentials.env"

# The private certificate authority of this local folder and the certificates it signed for the
# broker and the database (deploy/local/tls.sh). Clients trust $TLS_CA only.
TLS_DIR="$LOCAL_DIR/tls"
TLS_CA="$TLS_DIR/ca.crt"

PG_PORT="${REFEX_PG_PORT:-15432}"
PG_DIR="${REFEX_PG_DIR:-$LOCAL_DIR/postgres}"
# As root, PostgreSQL runs as the `postgres` OS user, which must be able to reach its data folder.
# A checkout under a private folder (e.g. /root) is out of its reach: use a folder under /var/tmp
# named after this checkout instead.
if [[ -z "${REFEX_PG_DIR:-}" && "$(id -u)" == 0 ]] && ! runuser -u postgres -- test -x "$REPO_ROOT" 2>/dev/null; then
  PG_DIR="/var/tmp/refex-$(printf '%s' "$LOCAL_DIR" | sha256sum | cut -c1-12)/postgres"
fi
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
PG_CREDENTIALS="$PG_DIR/credentials.env"
PG_SUPERUSER=postgres

# The services, each with its own database and login role of the same name.
SERVICES=(intake referral notification evidence)

log() { printf '\033[1;34m[local]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[local] error:\033[0m %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on ${2:-127.0.0.1}:$1 (at once: a host cut off
# by `kafka.sh cut` answers nothing, and is not open).
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/${2:-127.0.0.1}/$1" 2>/dev/null; }

# True when the pid in file $1 names a live process.
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# PostgreSQL refuses to run as root: when we are root, run its tools as the postgres OS user.
as_pg_owner() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# make test, make chaos and make bench run on private infrastructure of their own: tear down what
# a run killed midway left behind, start clean, and tear everything down again on exit.
teardown_private() {
  "$REPO_ROOT/deploy/local/down.sh" || true
  rm -rf "$LOCAL_DIR" "$PG_DIR"
  [[ "$PG_DIR" == "$LOCAL_DIR"/* ]] || rmdir "$(dirname "$PG_DIR")" 2>/dev/null || true
}
start_fresh_private() {
  teardown_private >/dev/null 2>&1
  trap teardown_private EXIT
}
