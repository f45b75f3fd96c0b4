#!/usr/bin/env bash
# Local Apache Kafka (KRaft, combined broker+controller nodes) from Maven Central jars: one node,
# or with REFEX_KAFKA_BROKERS=3 a replicated cluster of three on loopback (decision 33).
#   kafka.sh fetch      resolve the broker classpath once into .local/kafka/libs
#   kafka.sh up [N]     fetch if needed, format storage once, start every node (or node N), wait
#                       until each answers
#   kafka.sh down [N]   stop every node (or node N) cleanly (SIGTERM, then wait)
#   kafka.sh kill N     SIGKILL node N (the chaos run's hard bounce; `up N` starts it again)
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

# Every controller of the cluster, for controller.quorum.voters (static: no --standalone).
voters() {
  local n out=""
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do out+="${out:+,}$n@127.0.0.1:$(kafka_node_controller_port "$n")"; done
  echo "$out"
}

write_config() {
  local n="$1" dir port
  dir="$(kafka_node_dir "$n")"; port="$(kafka_node_port "$n")"
  mkdir -p "$dir/data"
  # 0600: the file holds the admin's and the controller's passwords.
  ( umask 077
    REFEX_KAFKA_NODE_ID="$n" REFEX_KAFKA_QUORUM_VOTERS="$(voters)" \
    REFEX_KAFKA_REPLICATION_FACTOR="$KAFKA_REPLICATION_FACTOR" \
    broker_properties "CLIENT://127.0.0.1:$port" "CLIENT://127.0.0.1:$port" \
        "127.0.0.1:$(kafka_node_controller_port "$n")" "$dir/data" \
        "$KAFKA_PASSWORD_ADMIN" "$KAFKA_PASSWORD_CONTROLLER" \
        "$TLS_DIR/kafka.pem" "$TLS_CA" > "$dir/server.properties" )
}

# One cluster id for every node of this folder, kept so a node formatted later joins the same
# cluster.
cluster_id() {
  local file="$KAFKA_DIR/cluster.id"
  if [[ ! -s "$file" ]]; then
    mkdir -p "$KAFKA_DIR"
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1 > "$file"
  fi
  cat "$file"
}

format_storage() {
  local n="$1" dir
  dir="$(kafka_node_dir "$n")"
  [[ -f "$dir/data/meta.properties" ]] && return 0
  log "formatting KRaft storage in $dir/data"
  # The admin's SCRAM credential must exist before the first start: nobody could create it later.
  # Every controller is formatted with it: whichever becomes the first leader writes it.
  java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -c "$dir/server.properties" \
      -t "$(cluster_id)" --ignore-formatted \
      --add-scram "$(broker_admin_scram "$KAFKA_PASSWORD_ADMIN")" >/dev/null
}

wait_ready() {
  local n="$1" dir port deadline=$((SECONDS + ${REFEX_KAFKA_START_TIMEOUT:-90}))
  dir="$(kafka_node_dir "$n")"; port="$(kafka_node_port "$n")"
  while (( SECONDS < deadline )); do
    pid_alive "$dir/broker.pid" || { tail -n 30 "$dir/broker.log" >&2; die "Kafka node $n exited during start-up (log: $dir/broker.log)"; }
    if port_open "$port" && grep -q "Kafka Server started" "$dir/broker.log"; then
      log "Kafka node $n ready on 127.0.0.1:$port"; return 0
    fi
    sleep 0.5
  done
  die "Kafka node $n did not become ready in time (log: $dir/broker.log)"
}

start_node() {
  local n="$1" dir
  dir="$(kafka_node_dir "$n")"
  write_config "$n"
  format_storage "$n"
  log "starting Kafka node $n of $KAFKA_BROKERS (log: $dir/broker.log)"
  # setsid: the broker gets its own session so Ctrl-C in a terminal reaches it only via `down`.
  setsid java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -cp "$KAFKA_LIBS/*" \
      -Dlog4j2.configurationFile="$REPO_ROOT/deploy/local/kafka/log4j2.yaml" \
      kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 < /dev/null &
  echo $! > "$dir/broker.pid"
}

# The nodes an action is for: node $1 if given, else all of them.
nodes() {
  if [[ -n "${1:-}" ]]; then
    [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= KAFKA_BROKERS )) || die "no Kafka node $1 (REFEX_KAFKA_BROKERS=$KAFKA_BROKERS)"
    echo "$1"
  else
    seq 1 "$KAFKA_BROKERS"
  fi
}

up() {
  local n starting=()
  for n in $(nodes "${1:-}"); do
    if pid_alive "$(kafka_node_dir "$n")/broker.pid"; then
      log "Kafka node $n already running (pid $(cat "$(kafka_node_dir "$n")/broker.pid"))"; continue
    fi
    for port in "$(kafka_node_port "$n")" "$(kafka_node_controller_port "$n")"; do
      port_open "$port" && die "port $port is already in use by another process; free it or set REFEX_KAFKA_PORT / REFEX_KAFKA_CONTROLLER_PORT"
    done
    starting+=("$n")
  done
  (( ${#starting[@]} )) || return 0
  fetch
  credentials
  "$REPO_ROOT/deploy/local/tls.sh"
  # All before waiting for any: a node of a cluster is ready only once a majority of the
  # controllers runs.
  for n in "${starting[@]}"; do start_node "$n"; done
  for n in "${starting[@]}"; do wait_ready "$n"; done
}

stop_node() {
  local n="$1" signal="$2" pid_file pid
  pid_file="$(kafka_node_dir "$n")/broker.pid"
  if ! pid_alive "$pid_file"; then rm -f "$pid_file"; log "Kafka node $n not running"; return 0; fi
  pid="$(cat "$pid_file")"
  log "stopping Kafka node $n (pid $pid, SIG$signal)"
  kill "-$signal" "$pid"
  # A controlled shutdown moves the node's leaderships first; allow it a minute.
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; return 0; }; sleep 0.5; done
  log "Kafka node $n did not stop in 60 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$pid_file"
}

down() {
  local n pid pids=()
  # In parallel: a cluster's last nodes would otherwise wait for a quorum that is already gone.
  for n in $(nodes "${1:-}"); do stop_node "$n" TERM & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

status() {
  local n rc=0 pid_file
  for n in $(nodes); do
    pid_file="$(kafka_node_dir "$n")/broker.pid"
    if pid_alive "$pid_file"; then
      echo "kafka: node $n running (pid $(cat "$pid_file")) on 127.0.0.1:$(kafka_node_port "$n")"
    else echo "kafka: node $n stopped"; rc=1; fi
  done
  return "$rc"
}

case "${1:-}" in
  fetch) fetch ;; up) up "${2:-}" ;; down) down "${2:-}" ;; status) status ;;
  kill) [[ -n "${2:-}" ]] || die "usage: $0 kill N"; stop_node "$(nodes "$2")" KILL ;;
  *) echo "usage: $0 fetch|up [N]|down [N]|kill N|status" >&2; exit 2 ;;
esac
