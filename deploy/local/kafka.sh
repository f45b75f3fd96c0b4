#!/usr/bin/env bash
# Local Apache Kafka (KRaft, combined broker+controller nodes) from Maven Central jars: one node,
# or with REFEX_KAFKA_BROKERS=3 a replicated cluster of three on loopback (decision 34).
#   kafka.sh fetch      resolve the broker classpath once into .local/kafka/libs
#   kafka.sh up [N]     fetch if needed, format storage once, start every node (or node N), wait
#                       until each answers
#   kafka.sh down [N]   stop every node (or node N) cleanly (SIGTERM, then wait); all of them:
#                       their network namespaces too (REFEX_KAFKA_NETNS=1)
#   kafka.sh stop       stop every node, keeping their network: what a restart of every broker
#                       does on a host whose network stays (the chaos run's broker restart)
#   kafka.sh kill N     SIGKILL node N (the chaos run's hard bounce; `up N` starts it again)
#   kafka.sh cut N      with REFEX_KAFKA_NETNS=1: take node N's link down (a network partition:
#                       the others and every client lose it, it loses them); `heal N` restores it
#   kafka.sh controller the node id of the KRaft quorum's current leader (the active controller)
#   kafka.sh roll       a rolling restart: each node stopped and started in turn, the next one
#                       only once every partition is in sync again (a renewed certificate, a CA
#                       rotation's step: tls.sh runs it; one node: a plain restart)
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
  for ((n = 1; n <= KAFKA_BROKERS; n++)); do
    out+="${out:+,}$n@$(kafka_node_host "$n"):$(kafka_node_controller_port "$n")"
  done
  echo "$out"
}

write_config() {
  local n="$1" dir port host
  dir="$(kafka_node_dir "$n")"; port="$(kafka_node_port "$n")"; host="$(kafka_node_host "$n")"
  mkdir -p "$dir/data"
  # 0600: the file holds the admin's and the controller's passwords.
  ( umask 077
    REFEX_KAFKA_NODE_ID="$n" REFEX_KAFKA_QUORUM_VOTERS="$(voters)" \
    REFEX_KAFKA_REPLICATION_FACTOR="$KAFKA_REPLICATION_FACTOR" \
    broker_properties "CLIENT://$host:$port" "CLIENT://$host:$port" \
        "$host:$(kafka_node_controller_port "$n")" "$dir/data" \
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
  local n="$1" dir port host deadline=$((SECONDS + ${REFEX_KAFKA_START_TIMEOUT:-90}))
  dir="$(kafka_node_dir "$n")"; port="$(kafka_node_port "$n")"; host="$(kafka_node_host "$n")"
  while (( SECONDS < deadline )); do
    pid_alive "$dir/broker.pid" || { tail -n 30 "$dir/broker.log" >&2; die "Kafka node $n exited during start-up (log: $dir/broker.log)"; }
    if port_open "$port" "$host" && grep -q "Kafka Server started" "$dir/broker.log"; then
      log "Kafka node $n ready on $host:$port"; return 0
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
  local in_netns=()
  [[ "$KAFKA_NETNS" == 1 ]] && in_netns=(ip netns exec "$(kafka_node_netns "$n")")
  # setsid: the broker gets its own session so Ctrl-C in a terminal reaches it only via `down`.
  # (`ip netns exec` execs java: the pid recorded is the broker's.)
  setsid "${in_netns[@]}" java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -cp "$KAFKA_LIBS/*" \
      -Dlog4j2.configurationFile="$REPO_ROOT/deploy/local/kafka/log4j2.yaml" \
      kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 < /dev/null &
  echo $! > "$dir/broker.pid"
}

# The nodes an action is for: node $1 if given, else all of them. (Validated by check_node
# first: a `die` inside $(…) would end only the substitution.)
nodes() { if [[ -n "${1:-}" ]]; then echo "$1"; else seq 1 "$KAFKA_BROKERS"; fi; }
check_node() {
  [[ -z "${1:-}" ]] && return 0
  [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= KAFKA_BROKERS )) ||
    die "no Kafka node $1 (REFEX_KAFKA_BROKERS=$KAFKA_BROKERS)"
}

up() {
  local n starting=()
  # The network first: a node's address answers (or refuses) at once then, instead of leaving
  # the port checks below to time out on a route to nowhere.
  [[ "$KAFKA_NETNS" == 1 ]] && netns_up
  for n in $(nodes "${1:-}"); do
    if pid_alive "$(kafka_node_dir "$n")/broker.pid"; then
      log "Kafka node $n already running (pid $(cat "$(kafka_node_dir "$n")/broker.pid"))"; continue
    fi
    for port in "$(kafka_node_port "$n")" "$(kafka_node_controller_port "$n")"; do
      port_open "$port" "$(kafka_node_host "$n")" && die "port $port is already in use by another process; free it or set REFEX_KAFKA_PORT / REFEX_KAFKA_CONTROLLER_PORT"
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

stop_all() {
  local n pid pids=()
  # In parallel: a cluster's last nodes would otherwise wait for a quorum that is already gone.
  for n in $(nodes "${1:-}"); do stop_node "$n" TERM & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

down() {
  stop_all "${1:-}"
  # The whole cluster down: its network goes too (up makes it again). Not on `stop`: without
  # the bridge, the nodes' addresses would follow the default route off this machine.
  if [[ -z "${1:-}" && "$KAFKA_NETNS" == 1 ]]; then netns_down; fi
}

# The namespaces, veth pairs and bridge of REFEX_KAFKA_NETNS=1 (common.sh), made idempotently.
netns_bridge() { echo "rfx${KAFKA_NETNS_TAG}br"; }
netns_up() {
  [[ "$(id -u)" == 0 ]] || die "REFEX_KAFKA_NETNS=1 needs root (ip netns, veth pairs)"
  command -v ip >/dev/null || die "ip not found: apt-get install iproute2"
  local bridge n ns veth
  bridge="$(netns_bridge)"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$KAFKA_NETNS_SUBNET.254/24" dev "$bridge"
  fi
  ip link set "$bridge" up
  for n in $(nodes); do
    ns="$(kafka_node_netns "$n")"; veth="$(kafka_node_veth "$n")"
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      ip -n "$ns" addr add "$(kafka_node_host "$n")/24" dev eth0
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip link set "$veth" master "$bridge" up
  done
}
netns_down() {
  local n
  for n in $(nodes); do ip netns del "$(kafka_node_netns "$n")" 2>/dev/null || true; done
  ip link del "$(netns_bridge)" 2>/dev/null || true
}

link() {
  [[ "$KAFKA_NETNS" == 1 ]] || die "kafka.sh $1 needs the nodes in namespaces (REFEX_KAFKA_NETNS=1)"
  local veth; veth="$(kafka_node_veth "$2")"
  log "node $2's link $([[ $1 == cut ]] && echo cut || echo restored)"
  ip link set "$veth" "$([[ $1 == cut ]] && echo down || echo up)"
}

# The leader of the highest epoch any node recorded in its quorum-state file (KRaft writes it at
# every election): the active controller, without starting a JVM for Kafka's quorum tool.
controller() {
  local n file epoch leader best=-1 who=""
  for n in $(nodes); do
    file="$(kafka_node_dir "$n")/data/__cluster_metadata-0/quorum-state"
    [[ -s "$file" ]] || continue
    epoch="$(grep -o '"leaderEpoch":[0-9-]*' "$file" | cut -d: -f2)"
    leader="$(grep -o '"leaderId":[0-9-]*' "$file" | cut -d: -f2)"
    if [[ -n "$epoch" && -n "$leader" && "$leader" != -1 ]] && (( epoch > best )); then
      best="$epoch"; who="$leader"
    fi
  done
  [[ -n "$who" ]] || die "no node has recorded a quorum leader yet"
  echo "$who"
}

# One node after another, so that a cluster never has two down: with RF 3 and min.insync 2 every
# partition keeps taking writes. The next node waits until the restarted one caught up, as the
# in-sync replicas say (refex platform replicas, as the operator).
roll() {
  local n
  [[ -f "$LOCAL_DIR/operator.env" ]] || die "no $LOCAL_DIR/operator.env (deploy/local/env.sh writes it): nothing to roll"
  for n in $(nodes); do
    pid_alive "$(kafka_node_dir "$n")/broker.pid" || die "Kafka node $n is not running: a rolling restart needs every node up"
  done
  for n in $(nodes); do
    stop_node "$n" TERM
    up "$n"
    (( KAFKA_BROKERS > 1 )) || continue
    ( set -a; source "$LOCAL_DIR/operator.env"; set +a
      "$REPO_ROOT/.venv/bin/refex" platform replicas --wait "${REFEX_KAFKA_ROLL_TIMEOUT:-240}" >/dev/null ) ||
      die "partitions still a replica short after node $n restarted: see refex platform replicas; the roll stopped before the next node"
    log "node $n restarted and every partition is in sync again"
  done
}

status() {
  local n rc=0 pid_file
  for n in $(nodes); do
    pid_file="$(kafka_node_dir "$n")/broker.pid"
    if pid_alive "$pid_file"; then
      echo "kafka: node $n running (pid $(cat "$pid_file")) on $(kafka_node_host "$n"):$(kafka_node_port "$n")"
    else echo "kafka: node $n stopped"; rc=1; fi
  done
  return "$rc"
}

check_node "${2:-}"
case "${1:-}" in
  fetch) fetch ;; up) up "${2:-}" ;; down) down "${2:-}" ;; stop) stop_all ;; status) status ;;
  kill) [[ -n "${2:-}" ]] || die "usage: $0 kill N"; stop_node "$2" KILL ;;
  cut|heal) [[ -n "${2:-}" ]] || die "usage: $0 $1 N"; link "$1" "$2" ;;
  controller) controller ;;
  roll) roll ;;
  *) echo "usage: $0 fetch|up [N]|down [N]|stop|kill N|cut N|heal N|controller|roll|status" >&2; exit 2 ;;
esac
