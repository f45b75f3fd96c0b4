#!/usr/bin/env bash
# Bring up the local infrastructure: Kafka, PostgreSQL, the env file, and the catalogue's topics.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO_ROOT/deploy/local/kafka.sh" up
"$REPO_ROOT/deploy/local/postgres.sh" up
"$REPO_ROOT/deploy/local/env.sh" >/dev/null
set -a; source "$LOCAL_DIR/env"; set +a
"$REPO_ROOT/.venv/bin/refex" platform create-topics >/dev/null
log "topics ready; environment in $LOCAL_DIR/env"
