#!/usr/bin/env bash
# Private PostgreSQL cluster for local runs and tests: its own data folder and port, one database
# and one login role per service; a role can connect only to its own service's database. TCP
# connections must use TLS (hostssl, with the certificate deploy/local/tls.sh made) and a
# password; the superuser's set-up uses the private unix socket.
#   postgres.sh up | down | status | psql [args]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

find_bin() {
  if [[ -n "${REFEX_PG_BIN:-}" ]]; then echo "$REFEX_PG_BIN"; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" ]] || dir="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
  [[ -x "$dir/initdb" ]] || die "PostgreSQL server binaries not found: apt-get install postgresql (or set REFEX_PG_BIN)"
  echo "$dir"
}
PG_BIN="$(find_bin)"

pg_ctl_() { as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"; }
psql_() { as_pg_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U "$PG_SUPERUSER" "$@"; }
running() { [[ -f "$PG_DATA/postmaster.pid" ]] && pg_ctl_ status >/dev/null 2>&1; }

init_cluster() {
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  log "creating private PostgreSQL cluster in $PG_DATA"
  mkdir -p "$PG_DIR" "$PG_SOCKET_DIR"
  [[ "$PG_DIR" == "$LOCAL_DIR"/* ]] || log "PostgreSQL data in $PG_DIR (the checkout is not reachable by the postgres user)"
  [[ "$(id -u)" == 0 ]] && chown -R postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  # Trust only on the private unix socket (a 0700 folder); TCP always needs a password (and
  # TLS: pg_hba.conf is rewritten by tls_config).
  as_pg_owner "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  cat >> "$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = on
# Per-statement timings (make bench writes the top ones next to its results).
shared_preload_libraries = 'pg_stat_statements'
CONF
}

# TLS for every TCP connection, at each start (a cluster made before TLS gets it too): the
# server's certificate and key, copied from the local folder's TLS directory into the cluster's
# own folder, owned by the postgres OS user (PostgreSQL refuses a key others can read); the
# settings in an included file; pg_hba.conf accepting TCP only with TLS and a password.
tls_config() {
  "$REPO_ROOT/deploy/local/tls.sh"
  local tls="$PG_DIR/tls" owner=()
  [[ "$(id -u)" == 0 ]] && owner=(-o postgres -g postgres)
  install -d -m 0700 "${owner[@]}" "$tls"
  install -m 0644 "${owner[@]}" "$TLS_DIR/postgres.crt" "$tls/server.crt"
  install -m 0600 "${owner[@]}" "$TLS_DIR/postgres.key" "$tls/server.key"
  as_pg_owner tee "$PG_DATA/refex-tls.conf" >/dev/null <<CONF
# written by deploy/local/postgres.sh at each start: do not edit
ssl = on
ssl_cert_file = '$tls/server.crt'
ssl_key_file = '$tls/server.key'
ssl_min_protocol_version = 'TLSv1.2'
CONF
  grep -q "^include_if_exists = 'refex-tls.conf'" "$PG_DATA/postgresql.conf" ||
    echo "include_if_exists = 'refex-tls.conf'" | as_pg_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null
  as_pg_owner tee "$PG_DATA/pg_hba.conf" >/dev/null <<'HBA'
# written by deploy/local/postgres.sh at each start: do not edit
# TYPE     DATABASE  USER  ADDRESS        METHOD
# The private unix socket (a 0700 folder): the superuser's provisioning.
local      all       all                  trust
# TCP: TLS and a password, always. A connection without TLS is refused before authentication.
hostssl    all       all   127.0.0.1/32   scram-sha-256
hostssl    all       all   ::1/128        scram-sha-256
hostnossl  all       all   all            reject
HBA
}

# One role and one database per service; CONNECT is revoked from PUBLIC so roles stay in their lane.
provision() {
  umask 077
  touch "$PG_CREDENTIALS"
  # One password per service; a service added since the file was written gets its own.
  for svc in "${SERVICES[@]}"; do
    grep -q "^PG_PASSWORD_${svc^^}=" "$PG_CREDENTIALS" ||
      echo "PG_PASSWORD_${svc^^}=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >> "$PG_CREDENTIALS"
  done
  # shellcheck disable=SC1090
  source "$PG_CREDENTIALS"
  for svc in "${SERVICES[@]}"; do
    local var="PG_PASSWORD_${svc^^}"
    psql_ -d postgres <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$svc') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$svc') \gexec
ALTER ROLE "$svc" WITH LOGIN PASSWORD '${!var}';
SELECT format('CREATE DATABASE %I OWNER %I', '$svc', '$svc') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$svc') \gexec
REVOKE ALL ON DATABASE "$svc" FROM PUBLIC;
GRANT CONNECT, TEMP ON DATABASE "$svc" TO "$svc";
SQL
  done
  psql_ -d postgres -c "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;"
}

up() {
  if running; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    tls_config; pg_ctl_ reload >/dev/null  # a renewed certificate, or a cluster from before TLS
    provision; return 0
  fi
  port_open "$PG_PORT" && die "port $PG_PORT is already in use by another process; free it or set REFEX_PG_PORT"
  init_cluster
  tls_config
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  [[ "$(id -u)" == 0 ]] && { touch "$PG_LOG"; chown postgres:postgres "$PG_LOG"; }
  pg_ctl_ -l "$PG_LOG" -w -t 60 -o "-p $PG_PORT" start >/dev/null || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start"; }
  provision
  log "PostgreSQL ready on 127.0.0.1:$PG_PORT (TLS only)"
}

down() {
  if running; then log "stopping PostgreSQL"; pg_ctl_ -m fast -w -t 60 stop >/dev/null; else log "PostgreSQL not running"; fi
}

status() {
  if running; then echo "postgres: running on 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; return 1; fi
}

# A renewed certificate served without a restart (tls.sh renew, rotate-ca): connections stay.
reload() {
  running || { log "PostgreSQL is not running: it reads the new certificate when it starts"; return 0; }
  tls_config; pg_ctl_ reload >/dev/null
  log "PostgreSQL reloaded its certificate"
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;; reload) reload ;;
  psql) shift; psql_ "$@" ;;
  *) echo "usage: $0 up|down|status|reload|psql [args]" >&2; exit 2 ;;
esac
