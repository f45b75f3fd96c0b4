#!/usr/bin/env bash
# Stop the local infrastructure (data and cached jars stay for the next `up`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$REPO_ROOT/deploy/local/kafka.sh" down
"$REPO_ROOT/deploy/local/postgres.sh" down
