#!/usr/bin/env bash
# Entry point of the compose `postgres` service (official postgres image, started as root): gives
# PostgreSQL its TLS certificate and key, then hands over to the image's own entry point with the
# command of docker-compose.yml (which turns ssl on and names these files and the pg_hba.conf that
# refuses TCP without TLS). The key arrives as a compose secret, a bind mount owned by the host's
# user; PostgreSQL refuses a key file that is not its own with mode 0600 or less, so it is copied.
set -euo pipefail
secrets_dir="${REFEX_SECRETS_DIR:-/run/secrets}"
tls_dir="${REFEX_PG_TLS_DIR:-/var/lib/postgresql/tls}"
for name in postgres_tls_certificate postgres_tls_key; do
  [[ -s "$secrets_dir/$name" ]] || { echo "$secrets_dir/$name is missing or empty (deploy/compose/certificates.sh)" >&2; exit 1; }
done
install -d -m 0700 -o postgres -g postgres "$tls_dir"
install -m 0644 -o postgres -g postgres "$secrets_dir/postgres_tls_certificate" "$tls_dir/server.crt"
install -m 0600 -o postgres -g postgres "$secrets_dir/postgres_tls_key" "$tls_dir/server.key"
exec docker-entrypoint.sh "$@"
