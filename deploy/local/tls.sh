#!/usr/bin/env bash
# The local folder's TLS material (idempotent; kafka.sh and postgres.sh run it before they start):
#   .local/<dir>/tls/ca.crt, ca.key     a private certificate authority, made once per folder
#   .local/<dir>/tls/kafka.pem          the broker's PEM keystore (key, certificate, CA)
#   .local/<dir>/tls/postgres.crt, .key PostgreSQL's certificate and key
# Both servers are reached as 127.0.0.1 or localhost, the names their certificates carry; clients
# verify the chain against ca.crt and the host name against those names. Nothing here is
# committed (.local/ is git-ignored) and no key leaves this folder (postgres.sh copies its own
# into the cluster's folder, owned by the postgres OS user).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$REPO_ROOT/deploy/tls/certificates.sh"
command -v openssl >/dev/null || die "openssl not found: apt-get install openssl"
LOCAL_SAN="DNS:localhost,IP:127.0.0.1"
tls_ca "$TLS_DIR" || die "could not make the local certificate authority in $TLS_DIR"
# One certificate for every node of a cluster: KAFKA_SAN adds each node's address when the
# nodes have their own (network namespaces, common.sh).
tls_server "$TLS_DIR" kafka "$KAFKA_SAN" || die "could not make the broker's certificate"
tls_kafka_keystore "$TLS_DIR" kafka || die "could not write the broker's keystore"
tls_server "$TLS_DIR" postgres "$LOCAL_SAN" || die "could not make PostgreSQL's certificate"
