#!/usr/bin/env bash
# `make chaos`: the long fault-injection run (tests/chaos) against a private, fresh Kafka and
# PostgreSQL on their own ports, torn down afterwards. Options go to `python -m tests.chaos`
# (e.g. `make chaos ARGS="--submissions 5000"`). Exit code 0 only if every invariant held.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REFEX_LOCAL_DIR="$REPO_ROOT/.local/chaos"
export REFEX_KAFKA_PORT="${REFEX_CHAOS_KAFKA_PORT:-27092}"
export REFEX_KAFKA_CONTROLLER_PORT="${REFEX_CHAOS_KAFKA_CONTROLLER_PORT:-27093}"
export REFEX_PG_PORT="${REFEX_CHAOS_PG_PORT:-27432}"
export REFEX_INTAKE_HTTP_PORT=27101 REFEX_REFERRAL_HTTP_PORT=27102 REFEX_NOTIFICATION_HTTP_PORT=27103
source "$REPO_ROOT/deploy/local/common.sh"

start_fresh_private

"$REPO_ROOT/deploy/local/up.sh"
set -a; source "$REFEX_LOCAL_DIR/env"; set +a
cd "$REPO_ROOT"
.venv/bin/python -m tests.chaos --log-dir "$REPO_ROOT/.local/chaos-logs/$(date -u +%Y%m%dT%H%M%SZ)" "$@"
