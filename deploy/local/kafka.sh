#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) from Maven Central jars.
#   kafka.sh fetch   resolve the broker classpath once into .local/kafka/libs
#   kafka.sh up      fetch if needed, format storage once, start, wait until it answers
#   kafka.sh down    stop it cleanly (SIGTERM, then wait)
#   kafka.sh status
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$REPO_ROOT/deploy/kafka/broker-properties.sh"

POM="$REPO_ROOT/deploy/local/kafka/pom.xml"

fetch() {
  local stamp="$KAFKA_LIBS/.pom.sha256" want
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  log "resolving Kafka broker jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$KAFKA_LIBS" || die "Maven could not resolve the Kafka jars"
  echo "$want" > "$stamp"
}

# Credentials of the broker's own principals, generated once per local folder (never committed):
# `admin` (super user: operator tooling, provisioning, tests) and `controller` (the KRaft
# controller listener). Services and agencies get theirs from `refex platform grant-services` /
# `register-agency`, which read the service passwords from the same file.
credentials() {
  if [[ ! -f "$KAFKA_CREDENTIALS" ]]; then
    [[ -f "$KAFKA_DATA/meta.properties" ]] && die "$KAFKA_DATA exists without $KAFKA_CREDENTIALS: remove $KAFKA_DIR (make clean) to start afresh"
    mkdir -p "$(dirname "$KAFKA_CREDENTIALS")"
    ( umask 077; : > "$KAFKA_CREDENTIALS" )
  fi
  # A service added since the file was written (evidence, issue 19) gets its password too.
  local user
  for user in ADMIN CONTROLLER INTAKE REFERRAL NOTIFICATION EVIDENCE; do
    grep -q "^KAFKA_PASSWORD_$user=" "$KAFKA_CREDENTIALS" ||
      echo "KAFKA_PASSWORD_$user=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >> "$KAFKA_CREDENTIALS"
  done
  # shellcheck disable=SC1090
  source "$KAFKA_CREDENTIALS"
}

write_config() {
  mkdir -p "$KAFKA_DATA"
  # 0600: the file holds the admin's and the controller's passwords.
  ( umask 077
    broker_properties "CLIENT://127.0.0.1:$KAFKA_PORT" "CLIENT://127.0.0.1:$KAFKA_PORT" \
        "127.0.0.1:$KAFKA_CONTROLLER_PORT" "$KAFKA_DATA" \
        "$KAFKA_PASSWORD_ADMIN" "$KAFKA_PASSWORD_CONTROLLER" \
        "$TLS_DIR/kafka.pem" "$TLS_CA" > "$KAFKA_DIR/server.properties" )
}

format_storage() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  log "formatting KRaft storage in $KAFKA_DATA"
  local id
  id="$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
  # The admin's SCRAM credential must exist before the first start: nobody could create it later.
  java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -c "$KAFKA_DIR/server.properties" \
      -t "$id" --ignore-formatted \
      --add-scram "$(broker_admin_scram "$KAFKA_PASSWORD_ADMIN")" >/dev/null
}

wait_ready() {
  local deadline=$((SECONDS + ${REFEX_KAFKA_START_TIMEOUT:-90}))
  while (( SECONDS < deadline )); do
    pid_alive "$KAFKA_PID" || { tail -n 30 "$KAFKA_LOG" >&2; die "Kafka exited during start-up (log: $KAFKA_LOG)"; }
    if port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_LOG"; then
      log "Kafka ready on 127.0.0.1:$KAFKA_PORT"; return 0
    fi
    sleep 0.5
  done
  die "Kafka did not become ready in time (log: $KAFKA_LOG)"
}

up() {
  if pid_alive "$KAFKA_PID"; then log "Kafka already running (pid $(cat "$KAFKA_PID"))"; return 0; fi
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$port" && die "port $port is already in use by another process; free it or set REFEX_KAFKA_PORT / REFEX_KAFKA_CONTROLLER_PORT"
  done
  fetch
  credentials
  "$REPO_ROOT/deploy/local/tls.sh"
  write_config
  format_storage
  log "starting Kafka (log: $KAFKA_LOG)"
  # setsid: the broker gets its own session so Ctrl-C in a terminal reaches it only via `down`.
  setsid java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -cp "$KAFKA_LIBS/*" \
      -Dlog4j2.configurationFile="$REPO_ROOT/deploy/local/kafka/log4j2.yaml" \
      kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_LOG" 2>&1 < /dev/null &
  echo $! > "$KAFKA_PID"
  wait_ready
}

down() {
  if ! pid_alive "$KAFKA_PID"; then rm -f "$KAFKA_PID"; log "Kafka not running"; return 0; fi
  local pid; pid="$(cat "$KAFKA_PID")"
  log "stopping Kafka (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { rm -f "$KAFKA_PID"; return 0; }; sleep 0.5; done
  log "Kafka did not stop in 60 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$KAFKA_PID"
}

status() {
  if pid_alive "$KAFKA_PID"; then echo "kafka: running (pid $(cat "$KAFKA_PID")) on 127.0.0.1:$KAFKA_PORT"
  else echo "kafka: stopped"; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;; up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 fetch|up|down|status" >&2; exit 2 ;;
esac
