#!/usr/bin/env bash
# Run an operator command "beside" one local service, as production runs it inside that
# service's container: with the service's own settings (its DATABASE_URL, keys: the <SERVICE>_*
# lines of the services' environment file) added to the operator's shell (REFEX_KAFKA_*, from
# operator.env, for the audit log). No other service's secret is passed.
#   deploy/local/beside.sh referral .venv/bin/refex referral evidence --csv out.csv
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
service="${1:-}"
[[ " ${SERVICES[*]} " == *" $service "* && $# -ge 2 ]] ||
  die "usage: $0 intake|referral|notification|evidence COMMAND [ARGS...]"
shift
[[ -f "$LOCAL_DIR/env" ]] || die "no $LOCAL_DIR/env yet: start the system first (make run)"
[[ -n "${REFEX_KAFKA_PASSWORD:-}" ]] ||
  log "REFEX_KAFKA_* not set: commands that write the audit log need set -a; source $LOCAL_DIR/operator.env; set +a"
prefix="${service^^}_"
# The lines are NAME=VALUE with VALUE shell-quoted where needed (env.sh writes them so): eval
# undoes the quoting of this file of our own.
while IFS= read -r line; do
  [[ "$line" == "$prefix"* ]] && eval "export $line"
done < "$LOCAL_DIR/env"
exec "$@"
