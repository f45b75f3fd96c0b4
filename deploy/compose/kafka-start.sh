#!/usr/bin/env bash
# Entry point of the compose `kafka` service (official apache/kafka image): writes the broker
# configuration shared with the local broker (deploy/kafka/broker-properties.sh) with the
# passwords of the compose secrets (/run/secrets/kafka_admin_password, kafka_controller_password),
# formats the storage once with the admin's SCRAM credential, and starts the broker. Services and
# agencies get their principals from `refex platform` (platform-init).
#
# Two client listeners, the same TLS, authentication and ACLs on both: CLIENT (kafka:9092) for the
# services and operator tools inside the compose network, EXTERNAL (container port 9094,
# published on REFEX_PUBLIC_KAFKA_PORT) for agencies, advertised as
# REFEX_PUBLIC_KAFKA_HOST:REFEX_PUBLIC_KAFKA_PORT: a client is always sent back to the address of
# the listener it came in on, so each side reaches the broker by a name it can resolve. Both are
# SASL_SSL with the keystore of the compose secret kafka_tls_keystore, whose certificate names
# kafka, localhost and REFEX_PUBLIC_KAFKA_HOST (deploy/compose/certificates.sh).
set -euo pipefail
source /opt/refex/broker-properties.sh

secrets_dir="${REFEX_SECRETS_DIR:-/run/secrets}"
read_secret() {
  [[ -s "$secrets_dir/$1" ]] || { echo "$secrets_dir/$1 is missing or empty (deploy/compose/generate-env.sh)" >&2; exit 1; }
  cat "$secrets_dir/$1"
}
KAFKA_ADMIN_PASSWORD="$(read_secret kafka_admin_password)"
KAFKA_CONTROLLER_PASSWORD="$(read_secret kafka_controller_password)"
read_secret kafka_tls_keystore > /dev/null  # present and not empty
KEYSTORE="$secrets_dir/kafka_tls_keystore"
CA_FILE="${REFEX_KAFKA_CA_FILE:-/etc/refex/tls/ca.crt}"  # compose config tls_ca
[[ -s "$CA_FILE" ]] || { echo "$CA_FILE is missing (compose config tls_ca, deploy/compose/certificates.sh)" >&2; exit 1; }
: "${CLUSTER_ID:?}" "${REFEX_PUBLIC_KAFKA_HOST:?}" "${REFEX_PUBLIC_KAFKA_PORT:?}"
broker_check_password KAFKA_ADMIN_PASSWORD "$KAFKA_ADMIN_PASSWORD"
broker_check_password KAFKA_CONTROLLER_PASSWORD "$KAFKA_CONTROLLER_PASSWORD"

# One node (docker-compose.yml): the controller on loopback. The cluster of
# docker-compose.cluster.yml (decision 34) names this node (REFEX_KAFKA_NODE_ID), the host name
# the others and the services reach it by (REFEX_KAFKA_HOST_NAME: kafka, kafka-2, kafka-3) and
# every controller (REFEX_KAFKA_QUORUM_VOTERS); its controller listens on the network then, over
# TLS (broker_properties), and REFEX_KAFKA_REPLICATION_FACTOR=3 puts every topic on all three.
HOST_NAME="${REFEX_KAFKA_HOST_NAME:-kafka}"
CONTROLLER="127.0.0.1:9093"
[[ -n "${REFEX_KAFKA_QUORUM_VOTERS:-}" ]] && CONTROLLER="0.0.0.0:9093"

DATA=/var/lib/kafka/data
CONFIG=/tmp/refex/server.properties
mkdir -p /tmp/refex && chmod 700 /tmp/refex
umask 077
broker_properties "CLIENT://0.0.0.0:9092" "CLIENT://$HOST_NAME:9092" "$CONTROLLER" "$DATA" \
    "$KAFKA_ADMIN_PASSWORD" "$KAFKA_CONTROLLER_PASSWORD" "$KEYSTORE" "$CA_FILE" \
    "EXTERNAL://0.0.0.0:9094" "EXTERNAL://$REFEX_PUBLIC_KAFKA_HOST:$REFEX_PUBLIC_KAFKA_PORT" > "$CONFIG"
# For the healthcheck (kafka-broker-api-versions.sh --command-config).
broker_admin_client_properties "$KAFKA_ADMIN_PASSWORD" "$CA_FILE" > /tmp/refex/admin.properties

if [[ ! -f "$DATA/meta.properties" ]]; then
  /opt/kafka/bin/kafka-storage.sh format -c "$CONFIG" -t "$CLUSTER_ID" \
      --add-scram "$(broker_admin_scram "$KAFKA_ADMIN_PASSWORD")"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
