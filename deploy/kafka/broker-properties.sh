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
#   broker_admin_scram ADMIN_PW      the --add-scram argument of `kafka-storage format`
#   broker_check_password NAME VALUE refuses a password JAAS or SCRAM tooling would mangle
#   broker_admin_client_properties ADMIN_PW CA_FILE   client settings for Kafka's own tools
#
# There is no plaintext client listener to choose: every listener but the controller's is
# SASL_SSL, and the controller's is refused anywhere but on loopback.

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
  # The controller listener is SASL_PLAINTEXT (KRaft's own traffic, the controller's password
  # only): it must never be reachable from another machine.
  case "$controller" in
    127.0.0.1:*|localhost:*|\[::1\]:*) ;;
    *) echo "broker_properties: the controller listener must be on loopback, not $controller" >&2
       return 1 ;;
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
node.id=1
controller.quorum.voters=1@$controller
controller.listener.names=CONTROLLER
# Clients (services, agencies, operators) authenticate with SASL/SCRAM-SHA-512. The controller
# listener is not advertised and uses SASL/PLAIN with its own password: KRaft keeps SCRAM
# credentials in the metadata log, which the controller must serve before it could check them.
listeners=$listeners,CONTROLLER://$controller
advertised.listeners=$advertised
listener.security.protocol.map=$protocols,CONTROLLER:SASL_PLAINTEXT
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
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
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
