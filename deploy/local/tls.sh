#!/usr/bin/env bash
# The local folder's TLS material:
#   .local/<dir>/tls/ca.crt, ca.key     a private certificate authority, made once per folder;
#                                       ca.crt is what every client trusts (two CAs during a
#                                       rotation)
#   .local/<dir>/tls/kafka.pem          the broker's PEM keystore (key, certificate, CA)
#   .local/<dir>/tls/postgres.crt, .key PostgreSQL's certificate and key
# Both servers are reached as 127.0.0.1 or localhost, the names their certificates carry; clients
# verify the chain against ca.crt and the host name against those names. Nothing here is
# committed (.local/ is git-ignored) and no key leaves this folder (postgres.sh copies its own
# into the cluster's folder, owned by the postgres OS user).
#
#   tls.sh                  make what is missing, reissue what names other hosts or ends within
#                           30 days (idempotent; kafka.sh and postgres.sh run it before they start)
#   tls.sh status           the CAs trusted, where a rotation stands, each certificate's issuer and end
#   tls.sh renew            new keys and certificates for the brokers and PostgreSQL from the same
#                           CA, served at once: the brokers restarted one by one, PostgreSQL reloaded
#   tls.sh rotate-ca begin|switch|finish
#                           replace the CA without downtime (docs/operations.md "Rotating the
#                           certificates", decision 35): begin trusts both, switch serves the new
#                           one's certificates, finish trusts the new one alone. Each step is served
#                           at once as renew is; after begin and after finish restart the clients
#                           (they read ca.crt when they start).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$REPO_ROOT/deploy/tls/certificates.sh"
command -v openssl >/dev/null || die "openssl not found: apt-get install openssl"
LOCAL_SAN="DNS:localhost,IP:127.0.0.1"

ensure() {
  local renew="${1:-}"
  tls_ca "$TLS_DIR" || die "could not make the local certificate authority in $TLS_DIR"
  # One certificate for every node of a cluster: KAFKA_SAN adds each node's address when the
  # nodes have their own (network namespaces, common.sh).
  tls_server "$TLS_DIR" kafka "$KAFKA_SAN" "$renew" || die "could not make the broker's certificate"
  tls_kafka_keystore "$TLS_DIR" kafka || die "could not write the broker's keystore"
  tls_server "$TLS_DIR" postgres "$LOCAL_SAN" "$renew" || die "could not make PostgreSQL's certificate"
}

# What runs reads its certificates and trust again: the brokers one at a time (kafka.sh roll:
# a cluster keeps taking writes), PostgreSQL by a reload (its connections stay).
serve() {
  local n running=0
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    pid_alive "$(kafka_node_dir "$n")/broker.pid" && running=1
  done
  if (( running )); then "$REPO_ROOT/deploy/local/kafka.sh" roll; else log "Kafka is not running: it reads the new files when it starts"; fi
  "$REPO_ROOT/deploy/local/postgres.sh" reload
}

# Whether the server at HOST:PORT presents a certificate CAFILE verifies, host name included.
served_by() {
  local cafile="$1" host="$2" port="$3"; shift 3
  openssl s_client -connect "$host:$port" -CAfile "$cafile" -verify_return_error \
      -verify_ip "$host" "$@" </dev/null >/dev/null 2>&1
}

finish_checks() {
  local n
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    pid_alive "$(kafka_node_dir "$n")/broker.pid" || continue
    served_by "$TLS_DIR/ca-next.crt" "$(kafka_node_host "$n")" "$(kafka_node_port "$n")" ||
      die "Kafka node $n does not present a certificate of the new CA yet: run tls.sh rotate-ca switch again"
  done
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    served_by "$TLS_DIR/ca-next.crt" 127.0.0.1 "$PG_PORT" -starttls postgres ||
      die "PostgreSQL does not present a certificate of the new CA yet: run tls.sh rotate-ca switch again"
  fi
}

case "${1:-ensure}" in
  ensure) ensure ;;
  status) tls_status "$TLS_DIR" kafka postgres ;;
  renew)
    [[ "$(cat "$TLS_DIR/rotation" 2>/dev/null || echo none)" == none ]] ||
      die "a CA rotation is under way: its switch reissues the certificates"
    ensure renew; serve; log "the brokers and PostgreSQL serve their new certificates" ;;
  rotate-ca)
    case "${2:-}" in
      begin)
        ensure; tls_rotate_ca_begin "$TLS_DIR" || die "the rotation did not begin"
        serve
        log "step 1 of 3 done: the servers trust both CAs. Restart every client now (they trust $TLS_CA when they start; give agencies the new one), then: tls.sh rotate-ca switch" ;;
      switch)
        tls_rotate_ca_switch "$TLS_DIR" || die "the rotation did not switch"
        ensure; serve
        log "step 2 of 3 done: the servers present the new CA's certificates. Once no client trusts the old CA alone: tls.sh rotate-ca finish" ;;
      finish)
        finish_checks
        tls_rotate_ca_finish "$TLS_DIR" kafka postgres || die "the rotation did not finish"
        serve
        log "step 3 of 3 done: the new CA alone is trusted. Restart every client now to drop the old one" ;;
      *) die "usage: $0 rotate-ca begin|switch|finish" ;;
    esac ;;
  *) die "usage: $0 [ensure|status|renew|rotate-ca begin|switch|finish]" ;;
esac
