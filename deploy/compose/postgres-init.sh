#!/usr/bin/env bash
# Runs once, on the first start of the compose `postgres` service (empty data volume), from
# /docker-entrypoint-initdb.d. Mirrors deploy/local/postgres.sh: one database and one login role
# of the same name per service; CONNECT is revoked from PUBLIC so each role can reach only its own
# database. Passwords come from the compose secrets /run/secrets/<service>_db_password (written by
# deploy/compose/generate-env.sh beside the <service>_database_url the service logs in with).
# The entrypoint may source this file instead of executing it, so it never calls `exit`.
set -eo pipefail  # no -u: the entrypoint may source this file into its own shell

secrets_dir="${REFEX_SECRETS_DIR:-/run/secrets}"
for svc in intake referral notification evidence; do
  password_file="$secrets_dir/${svc}_db_password"
  if [[ ! -s "$password_file" ]]; then
    echo "$password_file is missing or empty: give the postgres service the ${svc}_db_password secret" >&2
    false  # set -e ends the init (no exit: this file may be sourced)
  fi
  password="$(< "$password_file")"
  # psql variables (:"name" quotes an identifier, :'name' a literal) keep the password out of the
  # SQL text and safe whatever characters it holds.
  psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
       -v svc="$svc" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'svc')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'svc') \gexec
ALTER ROLE :"svc" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'svc', :'svc')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'svc') \gexec
REVOKE CONNECT, TEMPORARY ON DATABASE :"svc" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"svc" TO :"svc";
SQL
done

# Service roles must not wander into the maintenance databases either.
psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
