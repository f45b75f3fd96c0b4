#!/usr/bin/env bash
# `make test`: lint, then the whole suite against a private, fresh Kafka + PostgreSQL on their own
# ports (so a running `make run` is not disturbed), torn down afterwards whatever happens.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# REFEX_TEST_LOCAL_DIR: a second run from the same checkout needs its own (with its own ports).
export REFEX_LOCAL_DIR="${REFEX_TEST_LOCAL_DIR:-$REPO_ROOT/.local/test}"
# REFEX_TEST_KAFKA_BROKERS=3 (make test-cluster): the same suite on a replicated cluster of three
# nodes, client ports from REFEX_TEST_KAFKA_PORT on, controllers after them (decision 34).
export REFEX_KAFKA_BROKERS="${REFEX_TEST_KAFKA_BROKERS:-1}"
export REFEX_KAFKA_PORT="${REFEX_TEST_KAFKA_PORT:-29092}"
export REFEX_KAFKA_CONTROLLER_PORT="${REFEX_TEST_KAFKA_CONTROLLER_PORT:-$((REFEX_KAFKA_PORT + REFEX_KAFKA_BROKERS))}"
export REFEX_PG_PORT="${REFEX_TEST_PG_PORT:-25432}"
export REFEX_INTAKE_HTTP_PORT="${REFEX_TEST_INTAKE_HTTP_PORT:-28001}"
export REFEX_REFERRAL_HTTP_PORT="${REFEX_TEST_REFERRAL_HTTP_PORT:-28002}"
export REFEX_NOTIFICATION_HTTP_PORT="${REFEX_TEST_NOTIFICATION_HTTP_PORT:-28003}"
export REFEX_EVIDENCE_HTTP_PORT="${REFEX_TEST_EVIDENCE_HTTP_PORT:-28004}"
export REFEX_GATEWAY_HTTP_PORT="${REFEX_TEST_GATEWAY_HTTP_PORT:-28005}"
export REFEX_GATEWAY_METRICS_PORT="${REFEX_TEST_GATEWAY_METRICS_PORT:-28006}"
# The real Prometheus server of tests/e2e/test_prometheus.py.
export REFEX_PROMETHEUS_PORT="${REFEX_TEST_PROMETHEUS_PORT:-28009}"
source "$REPO_ROOT/deploy/local/common.sh"

start_fresh_private

log "lint: ruff, mypy, import contracts"
"$REPO_ROOT/.venv/bin/ruff" check "$REPO_ROOT"
"$REPO_ROOT/.venv/bin/mypy" --config-file "$REPO_ROOT/pyproject.toml"
( cd "$REPO_ROOT" && .venv/bin/lint-imports )

"$REPO_ROOT/deploy/local/browser.sh"
"$REPO_ROOT/deploy/local/prometheus.sh"
"$REPO_ROOT/deploy/local/up.sh"
set -a; source "$REFEX_LOCAL_DIR/env"; set +a
cd "$REPO_ROOT"
.venv/bin/pytest -p no:cacheprovider "$@"
