#!/usr/bin/env bash
# `make bench`: the whole pipeline against a raw Kafka baseline (tests/bench), on a private, fresh
# Kafka and PostgreSQL on their own ports, torn down afterwards. Options go to
# `python -m tests.bench` (e.g. `make bench ARGS="--submissions 2000"`, `--instances 2`,
# `--no-matching`, `--no-baseline`, `--no-topology-baseline`). Ports: REFEX_BENCH_KAFKA_PORT,
# REFEX_BENCH_KAFKA_CONTROLLER_PORT, REFEX_BENCH_PG_PORT, REFEX_BENCH_<SERVICE>_HTTP_PORT.
# With ARGS containing --use-running it measures the system `make run` started instead (nothing
# is started or stopped).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
if [[ " $* " == *" --use-running "* ]]; then
  set -a; source "$REPO_ROOT/.local/env"; set +a
  exec .venv/bin/python -m tests.bench "$@"
fi
export REFEX_LOCAL_DIR="$REPO_ROOT/.local/bench"
export REFEX_KAFKA_PORT="${REFEX_BENCH_KAFKA_PORT:-26092}"
export REFEX_KAFKA_CONTROLLER_PORT="${REFEX_BENCH_KAFKA_CONTROLLER_PORT:-26093}"
export REFEX_PG_PORT="${REFEX_BENCH_PG_PORT:-26432}"
# With --instances N, instance n (from 0) of a service listens on its port + 10 n.
export REFEX_INTAKE_HTTP_PORT="${REFEX_BENCH_INTAKE_HTTP_PORT:-26101}"
export REFEX_REFERRAL_HTTP_PORT="${REFEX_BENCH_REFERRAL_HTTP_PORT:-26102}"
export REFEX_NOTIFICATION_HTTP_PORT="${REFEX_BENCH_NOTIFICATION_HTTP_PORT:-26103}"
# The broker gets a heap that fits a few thousand messages a second.
export REFEX_KAFKA_HEAP="${REFEX_KAFKA_HEAP:-1g}"
source "$REPO_ROOT/deploy/local/common.sh"

start_fresh_private

"$REPO_ROOT/deploy/local/up.sh"
psql_su() { as_pg_owner psql -X -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U "$PG_SUPERUSER" "$@"; }
psql_su -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
# A scratch database for the matching micro-benchmark, owned by the referral role.
psql_su -d postgres -c "CREATE DATABASE bench_matching OWNER referral" >/dev/null
set -a; source "$REFEX_LOCAL_DIR/env"; set +a
# The referral URL with its database name replaced; its query (sslmode, sslrootcert, whose path
# has slashes of its own) kept as it is.
referral_base="${REFERRAL_DATABASE_URL%%\?*}"
export BENCH_MATCHING_DATABASE_URL="${referral_base%/*}/bench_matching${REFERRAL_DATABASE_URL#"$referral_base"}"
export BENCH_KAFKA_PID_FILE="$KAFKA_PID" BENCH_PG_PID_FILE="$PG_DATA/postmaster.pid"
# pg_stat_statements as the superuser, over the local socket (trusted there): statements per
# submission for each service database.
export BENCH_PG_STATS_DSN="postgresql://$PG_SUPERUSER@/postgres?host=$PG_SOCKET_DIR&port=$PG_PORT"
OUT="$REPO_ROOT/.local/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
status=0
.venv/bin/python -m tests.bench --out "$OUT" "$@" || status=$?
# Where PostgreSQL spent its time during the run, per statement and per table (the database side
# of the profile; the services' side is ARGS=--profile).
psql_su -d postgres -P pager=off > "$OUT/db-statements.txt" <<'SQL' || true
SELECT d.datname AS db, s.calls, round(s.total_exec_time) AS total_ms,
       round(s.mean_exec_time::numeric, 3) AS mean_ms, s.rows, left(regexp_replace(s.query, '\s+', ' ', 'g'), 140) AS query
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
 ORDER BY s.total_exec_time DESC LIMIT 40;
SQL
for db in intake referral notification; do
  psql_su -d "$db" -P pager=off >> "$OUT/db-statements.txt" <<SQL || true
SELECT '$db' AS db, relname, seq_scan, seq_tup_read, idx_scan, n_live_tup
  FROM pg_stat_user_tables ORDER BY seq_tup_read DESC LIMIT 6;
SQL
done
echo "database statements: $OUT/db-statements.txt"
exit $status
