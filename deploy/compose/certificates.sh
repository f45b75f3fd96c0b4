#!/usr/bin/env bash
# The compose deployment's TLS material, in secrets/tls/ beside .env (generate-env.sh runs it;
# run it again after changing REFEX_PUBLIC_KAFKA_HOST, and before a certificate's end: it
# reissues what is missing, names the wrong hosts or ends within 30 days, and keeps the CA):
#   ca.crt        the private CA. Public: every container trusts it (compose config `tls_ca`),
#                 and each agency is given it to verify the broker (docs/integrators.md)
#   ca.key        its key: never mounted anywhere; keep it with the host's secrets
#   kafka.pem     the broker's key and certificate chain (PEM keystore), for kafka:9092 inside
#                 the network, localhost (the healthcheck) and REFEX_PUBLIC_KAFKA_HOST (agencies)
#   postgres.crt, postgres.key   PostgreSQL's, for postgres:5432 (the services' sslmode=verify-full)
#   kafka.key, kafka.crt, ca.srl  what the others are made from (never mounted)
#   ca-next.*, ca-old.crt, rotation  during a CA rotation only (deploy/tls/certificates.sh)
#
#   deploy/compose/certificates.sh [ACTION] [path of .env, default .env]
#     (no ACTION)              make what is missing, reissue what is out of date (idempotent)
#     status                   the CAs trusted, where a rotation stands, each certificate's end
#     renew                    new keys and certificates for the broker and PostgreSQL, same CA
#     rotate-ca begin|switch|finish   replace the CA without downtime, in three steps
#   After renew and each rotation step, the servers and clients read the files when their
#   containers are made again, one at a time: docs/operations.md "Rotating the certificates".
set -euo pipefail
action=ensure step=""
case "${1:-}" in
  status|renew) action="$1"; shift ;;
  rotate-ca) action="$1"; step="${2:-}"; shift 2 ||
    { echo "usage: $0 rotate-ca begin|switch|finish [.env]" >&2; exit 2; } ;;
esac
target="${1:-.env}"
tls="$(dirname "$target")/secrets/tls"
[[ -d "$(dirname "$tls")" ]] || { echo "no $(dirname "$tls")/: run deploy/compose/generate-env.sh first" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not found: install it (apt-get install openssl)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/../tls/certificates.sh"

public_host="${REFEX_PUBLIC_KAFKA_HOST:-}"
if [[ -z "$public_host" && -f "$target" ]]; then
  public_host="$(sed -n 's/^REFEX_PUBLIC_KAFKA_HOST=//p' "$target" | tail -n 1)"
fi
# kafka-2 and kafka-3: the other nodes of docker-compose.cluster.yml share this certificate.
kafka_san="DNS:kafka,DNS:kafka-2,DNS:kafka-3,DNS:localhost,IP:127.0.0.1"
if [[ "$public_host" =~ ^[0-9.]+$ || "$public_host" == *:* ]]; then
  kafka_san+=",IP:$public_host"
elif [[ -n "$public_host" ]]; then
  kafka_san+=",DNS:$public_host"
else
  echo "REFEX_PUBLIC_KAFKA_HOST is not set: the broker's certificate names only kafka and localhost; run $0 again once it is set" >&2
fi

mkdir -p -m 700 "$tls"
renew=""
case "$action/$step" in
  status/) tls_status "$tls" kafka postgres; exit 0 ;;
  renew/)
    [[ ! -f "$tls/rotation" ]] || { echo "a CA rotation is under way: its switch reissues the certificates" >&2; exit 1; }
    renew=renew ;;
  rotate-ca/begin) tls_rotate_ca_begin "$tls" ;;
  rotate-ca/switch) tls_rotate_ca_switch "$tls" ;;
  # The servers' certificates must be the new CA's: the files say so; that the servers were made
  # again after the switch is the runbook's step.
  rotate-ca/finish) tls_rotate_ca_finish "$tls" kafka postgres ;;
  ensure/) ;;
  *) echo "usage: $0 [status|renew|rotate-ca begin|switch|finish] [.env]" >&2; exit 2 ;;
esac
tls_ca "$tls"
tls_server "$tls" kafka "$kafka_san" "$renew"
tls_kafka_keystore "$tls" kafka
tls_server "$tls" postgres "DNS:postgres,DNS:localhost,IP:127.0.0.1" "$renew"
# As the other secrets: the directory is private, the files readable by the containers' own users
# (Kafka's appuser reads its keystore; postgres-start.sh copies the key to a file only the
# postgres user can read, as PostgreSQL demands). The CA's key is for this host's owner only.
chmod 0444 "$tls/ca.crt" "$tls/kafka.pem" "$tls/postgres.crt" "$tls/postgres.key"
# ca.key signs; kafka.key and kafka.crt are kafka.pem's parts, kept to see whether it is current.
chmod 0400 "$tls/ca.key" "$tls/kafka.key"
[[ -f "$tls/ca-next.key" ]] && chmod 0400 "$tls/ca-next.key"
echo "TLS material in $tls/ (give agencies $tls/ca.crt)" >&2
case "$action/$step" in
  renew/|rotate-ca/*)
    echo "now serve it: make the brokers, postgres, then every client container again, one at a time (docs/operations.md \"Rotating the certificates\")" >&2 ;;
esac
