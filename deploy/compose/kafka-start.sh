#!/usr/bin/env bash
# Entry point of the compose `kafka` service (official apache/kafka image): writes the broker
# configuration shared with the local broker (deploy/kafka/broker-properties.sh) with the
# passwords from .env, formats the storage once with the admin's SCRAM credential, and starts
# the broker. Services and agencies get their principals from `refex platform` (platform-init).
set -euo pipefail
source /opt/refex/broker-properties.sh

: "${CLUSTER_ID:?}" "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_CONTROLLER_PASSWORD:?}"
broker_check_password KAFKA_ADMIN_PASSWORD "$KAFKA_ADMIN_PASSWORD"
broker_check_password KAFKA_CONTROLLER_PASSWORD "$KAFKA_CONTROLLER_PASSWORD"
case "$KAFKA_ADMIN_PASSWORD$KAFKA_CONTROLLER_PASSWORD" in
  *change-me*) echo "replace the change-me passwords of .env.example (deploy/compose/generate-env.sh)" >&2; exit 1 ;;
esac

DATA=/var/lib/kafka/data
CONFIG=/tmp/refex/server.properties
mkdir -p /tmp/refex && chmod 700 /tmp/refex
umask 077
broker_properties "CLIENT://0.0.0.0:9092" "CLIENT://kafka:9092" "127.0.0.1:9093" "$DATA" \
    "$KAFKA_ADMIN_PASSWORD" "$KAFKA_CONTROLLER_PASSWORD" > "$CONFIG"
# For the healthcheck (kafka-broker-api-versions.sh --command-config).
broker_admin_client_properties "$KAFKA_ADMIN_PASSWORD" > /tmp/refex/admin.properties

if [[ ! -f "$DATA/meta.properties" ]]; then
  /opt/kafka/bin/kafka-storage.sh format -c "$CONFIG" -t "$CLUSTER_ID" \
      --add-scram "$(broker_admin_scram "$KAFKA_ADMIN_PASSWORD")"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
