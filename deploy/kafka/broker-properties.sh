# The broker configuration shared by the local broker (deploy/local/kafka.sh) and the compose
# `kafka` service (deploy/compose/kafka-start.sh): one place says how Kafka authenticates and
# authorises. Source it; do not run it.
#
#   broker_properties CLIENT_LISTEN ADVERTISED CONTROLLER_ADDR DATA_DIR ADMIN_PW CONTROLLER_PW \
#                     KEYSTORE CA_FILE [EXTERNAL_LISTEN EXTERNAL_ADVERTISED]
#     e.g. CLIENT://127.0.0.1:19092  CLIENT://127.0.0.1:19092  127.0.0.1:19093  /data  … … \
#          /tls/kafka.pem  /tls/ca.crt
#     KEYSTORE: the broker's PEM keystore (its private key, then its certificate and the CA's:
#     deploy/tls/certificates.sh); CA_FILE: the CA that signed it (the broker's own client
#     connections to its inter-broker listener verify it like any client).
#     EXTERNAL_*: a second client listener for clients outside the host's private network
#     (compose: agencies reach EXTERNAL://<public host>:<port>, the services CLIENT://kafka:9092);
#     same TLS, authentication and ACLs as CLIENT.
#   A replicated cluster (issue 22) is told so by three variables, read by broker_properties:
#     REFEX_KAFKA_NODE_ID             this node's id (default 1)
#     REFEX_KAFKA_QUORUM_VOTERS       every controller, id@host:port,… (default 1@CONTROLLER_ADDR:
#                                     one node); CONTROLLER_ADDR is where this node's listens
#     REFEX_KAFKA_REPLICATION_FACTOR  replicas of every topic, the internal ones included
#                                     (default 1); min.insync.replicas follows from it
#                                     (broker_min_insync). The topic creation reads the same
#                                     variable (shared/kafka/admin.py).
#   broker_min_insync RF             the min.insync.replicas of a replication factor
#   broker_admin_scram ADMIN_PW      the --add-scram argument of `kafka-storage format`
#   broker_check_password NAME VALUE refuses a password JAAS or SCRAM tooling would mangle
#   broker_admin_client_properties ADMIN_PW CA_FILE   client settings for Kafka's own tools
#
# There is no plaintext listener off loopback: every client listener is SASL_SSL, and so is the
# controller's unless it listens on loopback only (a single node), where it is SASL_PLAINTEXT.

# One replica may be down (a restart, a lost machine) without refusing writes, and an
# acknowledged write (acks=all) is still on two machines: RF 3 → 2. One node: 1.
broker_min_insync() {
  if (( $1 > 1 )); then echo $(($1 - 1)); else echo 1; fi
}

broker_check_password() {
  # JAAS lines quote the value and SCRAM tooling splits on ','; letters, digits, '-' and '_' are
  # safe everywhere. 16 characters at least: these are the keys to every agency's data.
  if [[ ! "$2" =~ ^[A-Za-z0-9_-]{16,}$ ]]; then
    echo "$1 must be at least 16 characters of letters, digits, '-' or '_'" >&2
    return 1
  fi
}

broker_admin_scram() {
  printf 'SCRAM-SHA-512=[name=admin,password=%s]' "$1"
}

broker_properties() {
  local client_listen="$1" advertised="$2" controller="$3" data_dir="$4" admin_pw="$5" ctrl_pw="$6"
  local keystore="${7:-}" ca_file="${8:-}" external_listen="${9:-}" external_advertised="${10:-}"
  local listeners="$client_listen" protocols="CLIENT:SASL_SSL" external_jaas=""
  local node_id="${REFEX_KAFKA_NODE_ID:-1}" voters="${REFEX_KAFKA_QUORUM_VOTERS:-1@$3}"
  local rf="${REFEX_KAFKA_REPLICATION_FACTOR:-1}" controller_protocol=SASL_PLAINTEXT min_isr
  [[ "$node_id" =~ ^[0-9]+$ && "$rf" =~ ^[1-9][0-9]*$ ]] || {
    echo "broker_properties: REFEX_KAFKA_NODE_ID and REFEX_KAFKA_REPLICATION_FACTOR are numbers" >&2
    return 1
  }
  [[ ",$voters," == *",$node_id@"* ]] || {
    echo "broker_properties: node $node_id is not among the quorum voters $voters" >&2
    return 1
  }
  min_isr="$(broker_min_insync "$rf")"
  # The controller listener carries KRaft's own traffic (the controller's password, the metadata
  # log). On loopback (one node) it is SASL_PLAINTEXT; where the other controllers must reach it
  # (a cluster across machines or network namespaces) it is SASL_SSL, with the same certificate
  # as the client listeners: never plaintext on a wire another machine can see.
  case "$controller" in
    127.0.0.1:*|localhost:*|\[::1\]:*) ;;
    *) controller_protocol=SASL_SSL ;;
  esac
  [[ -n "$keystore" && -n "$ca_file" ]] || {
    echo "broker_properties: TLS needs the broker's PEM keystore and the CA file" >&2
    return 1
  }
  if [[ -n "$external_listen" ]]; then
    [[ "$external_listen" == EXTERNAL://* && "$external_advertised" == EXTERNAL://* ]] || {
      echo "broker_properties: the external listener and its advertised address are EXTERNAL://host:port" >&2
      return 1
    }
    listeners="$client_listen,$external_listen"
    advertised="$advertised,$external_advertised"
    protocols="CLIENT:SASL_SSL,EXTERNAL:SASL_SSL"
    # Every SASL listener needs a JAAS entry; SCRAM checks clients against the credentials in
    # the metadata log, so the entry names no user (the broker never logs in over EXTERNAL).
    external_jaas="listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  cat <<PROPS
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
# Clients (services, agencies, operators) authenticate with SASL/SCRAM-SHA-512. The controller
# listener is not advertised and uses SASL/PLAIN with its own password: KRaft keeps SCRAM
# credentials in the metadata log, which the controller must serve before it could check them.
listeners=$listeners,CONTROLLER://$controller
advertised.listeners=$advertised
listener.security.protocol.map=$protocols,CONTROLLER:$controller_protocol
inter.broker.listener.name=CLIENT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
# TLS on every client listener: the broker's key and certificate chain in one PEM file; clients
# verify the chain against the private CA and the host name against the certificate's names.
# No client certificates: clients prove who they are with SCRAM, inside the TLS session.
ssl.keystore.type=PEM
ssl.keystore.location=$keystore
ssl.truststore.type=PEM
ssl.truststore.location=$ca_file
ssl.client.auth=none
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.endpoint.identification.algorithm=https
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
${external_jaas}
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$ctrl_pw" user_controller="$ctrl_pw";
# Nobody may do what no ACL allows. ACLs come from the topic catalogue (ops/access_policy.py);
# only the operators' admin principal (and the controller itself) bypass them.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
log.dirs=$data_dir
# Topics come only from the catalogue in shared/contracts/topics.py, never from a subscriber.
auto.create.topics.enable=false
num.partitions=1
# Every topic on REFEX_KAFKA_REPLICATION_FACTOR brokers, and a write acknowledged (acks=all, as
# every producer here asks) only once min.insync.replicas of them have it; the internal topics
# (consumer offsets, transactions, share groups) alike. An unclean leader election (a replica
# that missed acknowledged writes becoming leader) stays off, Kafka's default.
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
PROPS
}

# Client settings of the admin principal, for Kafka's own command-line tools.
broker_admin_client_properties() {
  cat <<PROPS
security.protocol=SASL_SSL
ssl.truststore.type=PEM
ssl.truststore.location=$2
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$1";
PROPS
}
