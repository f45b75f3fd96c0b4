#!/usr/bin/env bash
# `make chaos`: the long fault-injection run (tests/chaos) against a private, fresh Kafka and
# PostgreSQL on their own ports, torn down afterwards. Options go to `python -m tests.chaos`
# (e.g. `make chaos ARGS="--submissions 5000"`). Exit code 0 only if every invariant held.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# REFEX_CHAOS_KAFKA_BROKERS=3 (make chaos-cluster): on a replicated cluster of three nodes, each
# in its own network namespace with REFEX_KAFKA_NETNS=1 (decision 34), in a folder of its own.
export REFEX_KAFKA_BROKERS="${REFEX_CHAOS_KAFKA_BROKERS:-1}"
if (( REFEX_KAFKA_BROKERS > 1 )); then
  export REFEX_LOCAL_DIR="${REFEX_CHAOS_LOCAL_DIR:-$REPO_ROOT/.local/chaos-cluster}"
else
  export REFEX_LOCAL_DIR="${REFEX_CHAOS_LOCAL_DIR:-$REPO_ROOT/.local/chaos}"
fi
export REFEX_KAFKA_PORT="${REFEX_CHAOS_KAFKA_PORT:-27092}"
export REFEX_KAFKA_CONTROLLER_PORT="${REFEX_CHAOS_KAFKA_CONTROLLER_PORT:-$((REFEX_KAFKA_PORT + REFEX_KAFKA_BROKERS))}"
export REFEX_PG_PORT="${REFEX_CHAOS_PG_PORT:-27432}"
export REFEX_INTAKE_HTTP_PORT="${REFEX_CHAOS_INTAKE_HTTP_PORT:-27101}"
export REFEX_REFERRAL_HTTP_PORT="${REFEX_CHAOS_REFERRAL_HTTP_PORT:-27102}"
export REFEX_NOTIFICATION_HTTP_PORT="${REFEX_CHAOS_NOTIFICATION_HTTP_PORT:-27103}"
source "$REPO_ROOT/deploy/local/common.sh"

start_fresh_private

"$REPO_ROOT/deploy/local/up.sh"
set -a; source "$REFEX_LOCAL_DIR/env"; set +a
cd "$REPO_ROOT"
.venv/bin/python -m tests.chaos --log-dir "${REFEX_CHAOS_LOG_DIR:-$REPO_ROOT/.local/chaos-logs/$(date -u +%Y%m%dT%H%M%SZ)}" "$@"
