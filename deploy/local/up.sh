#!/usr/bin/env bash
# Bring up the local infrastructure: Kafka, PostgreSQL, the env file, the catalogue's topics and
# the services' Kafka principals and ACLs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO_ROOT/deploy/local/kafka.sh" up
"$REPO_ROOT/deploy/local/postgres.sh" up
"$REPO_ROOT/deploy/local/env.sh" >/dev/null
set -a; source "$LOCAL_DIR/env"; set +a
# The catalogue's topics, each service's principal and ACLs (idempotent; agencies get theirs
# when they are registered).
"$REPO_ROOT/.venv/bin/refex" platform provision >/dev/null
log "topics and service ACLs ready; operator environment in $LOCAL_DIR/operator.env"
