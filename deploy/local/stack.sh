#!/usr/bin/env bash
# Local GLV stack without Docker: a single-node KRaft Kafka broker (jars fetched
# from Maven Central), optionally a second, secured broker, and a private PostgreSQL
# cluster (Debian packages), all on 127.0.0.1 only, state kept outside the git tree.
#
# Usage: deploy/local/stack.sh COMMAND
#   start [--secure]   start Kafka + PostgreSQL (idempotent), return when all serve;
#                      --secure also starts the secure broker (SASL_SSL, SCRAM-SHA-512, ACLs)
#   stop               stop everything cleanly (both brokers and PostgreSQL)
#   status [--secure]  show what runs (exit 0 if Kafka and PostgreSQL run, and with
#                      --secure the secure broker too; 3 otherwise)
#   env                print export lines (eval "$(deploy/local/stack.sh env)"); the
#                      GLV_SECURE_KAFKA_* lines only while the secure broker runs
#   kafka-start        start the broker only      kafka-stop         stop the broker only
#   kafka-secure-start start the secure broker    kafka-secure-stop  stop the secure broker
#   pg-start           start PostgreSQL only      pg-stop            pg_ctl stop -m fast
#   pg-stop-immediate  pg_ctl stop -m immediate (crash-like, for fault tests)
#   tls                create/renew the local CA and certificates ($GLV_STATE_DIR/tls)
#   install            fetch Kafka jars and install PostgreSQL, start nothing (CI pre-warm)
#   kafka-lib          print the Kafka lib dir (fetching it if needed); used by kafka-tool.sh
#
# Environment: GLV_STATE_DIR (/var/tmp/glv), GLV_CACHE_DIR ($HOME/.cache/glv),
#   GLV_KAFKA_PORT (59092), GLV_KAFKA_CONTROLLER_PORT (59093), GLV_PG_PORT (55432),
#   GLV_KAFKA_SECURE_PORT (59094), GLV_KAFKA_SECURE_CONTROLLER_PORT (59095),
#   GLV_KAFKA_START_TIMEOUT (90 s), GLV_PG_START_TIMEOUT (60 s), GLV_KAFKA_STOP_TIMEOUT (30 s).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

HOST=127.0.0.1
STATE_DIR="${GLV_STATE_DIR:-/var/tmp/glv}"
CACHE_DIR="${GLV_CACHE_DIR:-$HOME/.cache/glv}"
KAFKA_PORT="${GLV_KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${GLV_KAFKA_CONTROLLER_PORT:-59093}"
KAFKA_SECURE_PORT="${GLV_KAFKA_SECURE_PORT:-59094}"
KAFKA_SECURE_CONTROLLER_PORT="${GLV_KAFKA_SECURE_CONTROLLER_PORT:-59095}"
PG_PORT="${GLV_PG_PORT:-55432}"
KAFKA_START_TIMEOUT="${GLV_KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${GLV_KAFKA_STOP_TIMEOUT:-30}"
PG_START_TIMEOUT="${GLV_PG_START_TIMEOUT:-60}"
SERVICES=(ticketing scheduler notifier archive)

# The POM is the single source of truth for the Kafka version.
KAFKA_POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$KAFKA_POM")"
KAFKA_LIB="$CACHE_DIR/kafka-$KAFKA_VERSION/lib"
KAFKA_MARKER="$KAFKA_LIB/.glv-complete"
# Short-lived tool JVMs: small heap, C1 only, serial GC = noticeably faster start.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  "-Dlog4j2.configurationFile=$HERE/kafka/tools-log4j2.properties")

# Local CA and certificates (deploy/local/tls.sh): PostgreSQL's server certificate, the
# secure broker's keystores. Clients trust $TLS_DIR/ca.crt.
TLS_DIR="$STATE_DIR/tls"
TLS_CA="$TLS_DIR/ca.crt"

# The secure broker: SASL_SSL + SCRAM-SHA-512 for clients and between brokers, mutual TLS
# on the controller listener, ACLs enforced (StandardAuthorizer, deny when no ACL).
KAFKA_SECURE_DIR="$STATE_DIR/kafka-secure"
KAFKA_ADMIN_USER=glv-admin
KAFKA_ADMIN_PASSWORD_FILE="$KAFKA_SECURE_DIR/admin.password"
# Client settings for Kafka's console tools as glv-admin (--command-config / --consumer.config).
KAFKA_ADMIN_PROPS="$KAFKA_SECURE_DIR/admin-client.properties"
# The principal of the controller listener's client certificate (default SSL principal = DN).
KAFKA_CONTROLLER_PRINCIPAL="User:CN=glv-kafka-controller"

PG_ROOT="$STATE_DIR/pg"
PG_DATA="$PG_ROOT/data"
PG_SOCK="$PG_ROOT/run"
PG_LOG="$PG_ROOT/postgres.log"
# The superuser "postgres" logs in with this password (scram-sha-256), also on the socket.
PG_SUPERUSER_PASSWORD_FILE="$PG_ROOT/superuser.password"
PG_BIN=""
# initdb/postgres refuse to run as root, so as root the cluster belongs to "postgres".
if ((EUID == 0)); then PG_OS_USER=postgres; else PG_OS_USER="$(id -un)"; fi

LOCK_FILE="$STATE_DIR/.stack.lock"

# 0755 even under a strict umask: postgres must traverse it to reach its data dir.
make_state_dir() { [[ -d "$STATE_DIR" ]] || { mkdir -p "$STATE_DIR" && chmod 0755 "$STATE_DIR"; }; }

say() { printf '%s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now_us() { local t="${EPOCHREALTIME/./}"; echo "$((10#$t))"; }

# Serialise state-changing commands (tests and people may call start concurrently).
# flock -o keeps the lock fd out of the script, hence out of the daemons it spawns,
# which would otherwise hold the lock forever.
with_lock() {
  if [[ "${GLV_STACK_LOCKED:-}" != 1 ]]; then
    make_state_dir
    GLV_STACK_LOCKED=1 exec flock -o -w 600 "$LOCK_FILE" "$SELF" "$@"
  fi
}

# A random secret (hex: safe in URLs, JAAS and pgpass alike) in a 0600 file, made once.
ensure_secret_file() {
  local file="$1"
  [[ -s "$file" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
  (umask 077 && openssl rand -hex 24 >"$file.tmp" && mv "$file.tmp" "$file")
}

# ---------------------------------------------------------------- TLS

# CA + certificates, created or renewed by tls.sh; the PostgreSQL key goes to its OS user.
TLS_CHECKED=0
ensure_tls() {
  ((TLS_CHECKED)) && return 0
  make_state_dir
  bash "$HERE/tls.sh" "$TLS_DIR"
  if ((EUID == 0)); then chown "$PG_OS_USER:" "$TLS_DIR/pg-server.key"; fi
  chmod 0600 "$TLS_DIR/pg-server.key"
  TLS_CHECKED=1
}

# ---------------------------------------------------------------- Kafka jars

pom_hash() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

# The marker holds the POM hash: a version bump in the POM refetches.
kafka_jars_ok() { [[ -f "$KAFKA_MARKER" && "$(cat "$KAFKA_MARKER")" == "$(pom_hash)" ]]; }

ensure_kafka_jars() {
  kafka_jars_ok && return 0
  [[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $KAFKA_POM"
  command -v java >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  say "==> fetching Kafka $KAFKA_VERSION from Maven Central (first run only)..."
  local partial="$KAFKA_LIB.partial" t0
  t0=$(now_us)
  rm -rf "$partial" && mkdir -p "$partial"
  if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
      -DoutputDirectory="$partial" >"$partial.log" 2>&1; then
    tail -n 40 "$partial.log" >&2
    die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $partial.log)"
  fi
  pom_hash >"$partial/.glv-complete"
  # Swap in whole so an interrupted download never looks complete.
  rm -rf "$KAFKA_LIB" && mv "$partial" "$KAFKA_LIB" && rm -f "$partial.log"
  say "    $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $KAFKA_LIB ($((($(now_us) - t0) / 1000000)) s)"
}

# Run a Kafka class (tool) with a timeout; logs WARN+ to stderr.
kafka_tool() {
  local secs="$1"; shift
  timeout "$secs" java "${TOOL_JVM_OPTS[@]}" -cp "$KAFKA_LIB/*" "$@"
}

# ---------------------------------------------------------------- Kafka brokers

# Two independent single-node brokers share the code below: "plain" (PLAINTEXT, what
# the services and most tests use) and "secure". kafka_use selects one by setting K_*.
kafka_use() {
  K_NAME="$1"
  case "$1" in
    plain)
      K_DIR="$STATE_DIR/kafka" K_PORT="$KAFKA_PORT" K_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT"
      K_LABEL=Kafka K_PORT_VARS="GLV_KAFKA_PORT / GLV_KAFKA_CONTROLLER_PORT"
      K_HEAP=(-Xmx512m -Xms256m) ;;
    secure)
      K_DIR="$KAFKA_SECURE_DIR" K_PORT="$KAFKA_SECURE_PORT" K_CONTROLLER_PORT="$KAFKA_SECURE_CONTROLLER_PORT"
      K_LABEL="secure Kafka" K_PORT_VARS="GLV_KAFKA_SECURE_PORT / GLV_KAFKA_SECURE_CONTROLLER_PORT"
      # Two brokers share a small machine: the secure one, used by few tests, gets less.
      K_HEAP=(-Xmx384m -Xms128m) ;;
    *) die "unknown broker $1" ;;
  esac
  K_DATA="$K_DIR/data"
  K_LOGS="$K_DIR/logs"
  K_PROPS="$K_DIR/server.properties"
  K_PIDFILE="$K_DIR/kafka.pid"
  K_OUT="$K_LOGS/kafka.out"
}

# Prints the broker pid if our broker (this server.properties) is alive.
kafka_pid() {
  [[ -f "$K_PIDFILE" ]] || return 1
  local pid cmdline
  pid="$(cat "$K_PIDFILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # A recycled pid or a zombie (empty cmdline) is not our broker.
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
  [[ "$cmdline" == *"kafka.Kafka $K_PROPS"* ]] || return 1
  echo "$pid"
}

# Settings both brokers share.
kafka_common_config() {
  cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$K_CONTROLLER_PORT
controller.listener.names=CONTROLLER
log.dirs=$K_DATA
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# After a kill -9 the restarted broker is refused (DUPLICATE_BROKER_REGISTRATION)
# until its previous incarnation's session expires: 9 s by default, 4 s here.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
}

jaas_scram() {
  printf 'org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";' \
    "$KAFKA_ADMIN_USER" "$(cat "$KAFKA_ADMIN_PASSWORD_FILE")"
}

write_kafka_config() {
  mkdir -p "$K_DATA" "$K_LOGS"
  # Rewritten on every start so port changes apply; the data dir is kept.
  if [[ "$K_NAME" == plain ]]; then
    {
      echo "# Generated by deploy/local/stack.sh on every start; edit the script, not this file."
      echo "listeners=PLAINTEXT://$HOST:$K_PORT,CONTROLLER://$HOST:$K_CONTROLLER_PORT"
      echo "advertised.listeners=PLAINTEXT://$HOST:$K_PORT"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
      kafka_common_config
    } >"$K_PROPS"
    return 0
  fi
  local kspw
  kspw="$(cat "$TLS_DIR/keystore.password")"
  # Holds the admin and keystore passwords: owner only.
  (umask 077 && {
    cat <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
# Clients: SASL_SSL only, SCRAM-SHA-512 (also between brokers, as $KAFKA_ADMIN_USER).
# Controller: TLS with a client certificate signed by the local CA required.
listeners=SASL_SSL://$HOST:$K_PORT,CONTROLLER://$HOST:$K_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOST:$K_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$(jaas_scram)
ssl.enabled.protocols=TLSv1.3,TLSv1.2
ssl.endpoint.identification.algorithm=https
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_CA
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/kafka-server.p12
listener.name.sasl_ssl.ssl.keystore.password=$kspw
listener.name.sasl_ssl.ssl.key.password=$kspw
listener.name.sasl_ssl.ssl.client.auth=none
# The broker reaches its controller through this listener with the same keystore,
# as a client: its certificate's principal is a super user.
listener.name.controller.ssl.keystore.type=PKCS12
listener.name.controller.ssl.keystore.location=$TLS_DIR/kafka-controller.p12
listener.name.controller.ssl.keystore.password=$kspw
listener.name.controller.ssl.key.password=$kspw
listener.name.controller.ssl.client.auth=required
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KAFKA_ADMIN_USER;$KAFKA_CONTROLLER_PRINCIPAL
EOF
    kafka_common_config
  } >"$K_PROPS.tmp" && mv "$K_PROPS.tmp" "$K_PROPS")
  # For kafka-tool.sh (--command-config) and the readiness probe.
  (umask 077 && cat >"$KAFKA_ADMIN_PROPS" <<EOF
# Generated by deploy/local/stack.sh: Kafka client settings for $KAFKA_ADMIN_USER on $HOST:$K_PORT.
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$(jaas_scram)
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_CA
EOF
  )
}

# KRaft storage must be formatted once with a cluster id. With static
# controller.quorum.voters, Kafka 4.x wants plain "format" (no --standalone,
# which is only for a dynamic quorum via controller.quorum.bootstrap.servers).
# The secure broker's admin SCRAM credential is written into the metadata here.
format_kafka_once() {
  local extra=()
  [[ -f "$K_DATA/meta.properties" ]] && return 0
  say "==> formatting KRaft storage in $K_DATA (first run only)..."
  if [[ ! -s "$K_DIR/cluster.id" ]]; then
    kafka_tool 60 kafka.tools.StorageTool random-uuid >"$K_DIR/cluster.id.tmp"
    mv "$K_DIR/cluster.id.tmp" "$K_DIR/cluster.id"
  fi
  if [[ "$K_NAME" == secure ]]; then
    extra=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_ADMIN_USER,password=$(cat "$KAFKA_ADMIN_PASSWORD_FILE")]")
  fi
  kafka_tool 60 kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$K_DIR/cluster.id")" -c "$K_PROPS" "${extra[@]}" >/dev/null
}

# The secure broker's own directory is private; its admin password is made before the
# storage is formatted (the credential lives in the cluster metadata from then on).
prepare_secure_dir() {
  mkdir -p "$K_DIR"
  chmod 0700 "$K_DIR"
  if [[ -f "$K_DATA/meta.properties" && ! -s "$KAFKA_ADMIN_PASSWORD_FILE" ]]; then
    die "$KAFKA_ADMIN_PASSWORD_FILE is missing but $K_DATA holds a cluster formatted with its password; remove $K_DIR to start over"
  fi
  ensure_secret_file "$KAFKA_ADMIN_PASSWORD_FILE"
  [[ -s "$TLS_DIR/kafka-server.p12" ]] || ensure_tls
}

# Starts the broker in the background if needed; does not wait (see wait_kafka_ready).
kafka_launch() {
  local pid port
  if pid="$(kafka_pid)"; then
    say "==> $K_LABEL already running (pid $pid), reusing"
    return 0
  fi
  ensure_kafka_jars
  # Fail fast instead of a long wait on a broker that cannot bind.
  for port in "$K_PORT" "$K_CONTROLLER_PORT"; do
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
      die "port $HOST:$port is already in use by another process (see $K_PORT_VARS)"
    fi
  done
  if [[ "$K_NAME" == secure ]]; then prepare_secure_dir; fi
  write_kafka_config
  format_kafka_once
  say "==> starting $K_LABEL $KAFKA_VERSION on $HOST:$K_PORT (controller $K_CONTROLLER_PORT)..."
  echo "==== $(date -Is) start" >>"$K_OUT"
  # setsid: own session, so a Ctrl-C / SIGHUP aimed at the caller spares the broker.
  # No fork happens on the way (subshell -> setsid -> nohup -> java all exec), so $! is java.
  (
    cd "$K_DIR"
    exec setsid nohup java "${K_HEAP[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" \
      "-Dkafka.logs.dir=$K_LOGS" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$K_PROPS"
  ) >>"$K_OUT" 2>&1 </dev/null &
  echo "$!" >"$K_PIDFILE"
}

kafka_fail() {
  say "ERROR: $*"
  say "---- tail of $K_OUT"
  tail -n 25 "$K_OUT" >&2 || true
  say "---- errors in $K_LOGS/server.log"
  grep -E '^\[.*\] (ERROR|FATAL)|^Caused by' "$K_LOGS/server.log" | tail -n 15 >&2 || true
  exit 1
}

# Ready = the port accepts TCP *and* an Admin round trip (list topics) succeeds;
# the port alone opens before the broker has caught up with the controller.
# The secure broker is probed as glv-admin over SASL_SSL.
wait_kafka_ready() {
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) probe="$K_DIR/probe.properties"
  until (exec 3<>"/dev/tcp/$HOST/$K_PORT") 2>/dev/null; do
    kafka_pid >/dev/null || kafka_fail "$K_LABEL exited during startup"
    ((SECONDS < deadline)) || kafka_fail "$K_LABEL port $K_PORT not open after ${KAFKA_START_TIMEOUT}s"
    sleep 0.2
  done
  # Short client timeouts so a dead broker is noticed between attempts.
  (
    umask 077
    {
      if [[ "$K_NAME" == secure ]]; then cat "$KAFKA_ADMIN_PROPS"; fi
      printf '%s\n' request.timeout.ms=5000 default.api.timeout.ms=8000
    } >"$probe.tmp" && mv "$probe.tmp" "$probe"
  )
  until kafka_tool 20 org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$K_PORT" \
      --command-config "$probe" --list >/dev/null 2>"$K_DIR/probe.err"; do
    kafka_pid >/dev/null || kafka_fail "$K_LABEL exited during startup"
    ((SECONDS < deadline)) || { cat "$K_DIR/probe.err" >&2; kafka_fail "$K_LABEL not answering after ${KAFKA_START_TIMEOUT}s"; }
    sleep 0.5
  done
  say "    $K_LABEL ready on $HOST:$K_PORT"
}

kafka_stop() {
  local pid i
  if ! pid="$(kafka_pid)"; then
    say "==> $K_LABEL not running"
    rm -f "$K_PIDFILE"
    return 0
  fi
  say "==> stopping $K_LABEL (pid $pid)..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < KAFKA_STOP_TIMEOUT * 5; i++)); do
    kafka_pid >/dev/null || break
    sleep 0.2
  done
  if kafka_pid >/dev/null; then
    say "    still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kafka_pid >/dev/null || break; sleep 0.2; done
  fi
  rm -f "$K_PIDFILE"
}

# Both brokers shut down at the same time (each takes a few seconds).
kafka_stop_all() {
  local secure_pid
  (kafka_use secure && kafka_stop) &
  secure_pid=$!
  kafka_use plain
  kafka_stop
  wait "$secure_pid"
}

# ---------------------------------------------------------------- PostgreSQL

find_pg_bin() {
  local initdb
  initdb="$(find /usr/lib/postgresql/*/bin/initdb -maxdepth 0 2>/dev/null | sort -V | tail -n 1 || true)"
  PG_BIN="${initdb%/initdb}"
}

ensure_pg_installed() {
  find_pg_bin
  [[ -n "$PG_BIN" ]] && return 0
  ((EUID == 0)) || die "PostgreSQL is not installed and installing it needs root"
  say "==> installing PostgreSQL from Debian packages (first run only)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # We run a private cluster; stop Debian from creating (and starting) its own
  # "main" cluster on 5432 when the server package installs.
  apt-get install -y -qq postgresql-common >&2
  pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster off
  apt-get install -y -qq postgresql postgresql-contrib >&2
  find_pg_bin
  [[ -n "$PG_BIN" ]] || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/initdb found"
}

# Run as the cluster's OS user, from a directory it can read (initdb complains otherwise).
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

# A file the cluster's OS user owns, written atomically with the given mode.
install_pg_file() {
  local mode="$1" dest="$2"
  cat >"$dest.tmp"
  chmod "$mode" "$dest.tmp"
  ((EUID != 0)) || chown "$PG_OS_USER:" "$dest.tmp"
  mv "$dest.tmp" "$dest"
}

# Password (SCRAM) for every connection, on the private unix socket as over TCP
# (with TLS or without it): no trust anywhere.
write_pg_hba() {
  local want
  want="# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256"
  [[ -f "$PG_DATA/pg_hba.conf" && "$(cat "$PG_DATA/pg_hba.conf")" == "$want" ]] && return 1
  install_pg_file 0600 "$PG_DATA/pg_hba.conf" <<<"$want"
}

# A cluster made by an older stack.sh lets anyone on the socket in (trust).
pg_hba_has_trust() {
  grep -Ev '^[[:space:]]*(#|$)' "$PG_DATA/pg_hba.conf" 2>/dev/null | grep -qw trust
}

# Only the owner (the cluster's OS user, and root) may reach the socket.
prepare_pg_socket_dir() {
  mkdir -p "$PG_SOCK"
  ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_SOCK"
  chmod 0700 "$PG_SOCK"
}

pg_init_once() {
  make_state_dir
  # The classic trap: a state dir under /root (0700) that postgres cannot traverse.
  as_pg test -x "$STATE_DIR" ||
    die "$STATE_DIR is not traversable by user $PG_OS_USER; point GLV_STATE_DIR elsewhere (default /var/tmp/glv)"
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  say "==> initdb $PG_DATA (first run only)..."
  mkdir -p "$PG_ROOT"
  chmod 0755 "$PG_ROOT"
  mkdir -p "$PG_DATA"
  chmod 0700 "$PG_DATA"
  ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_ROOT" "$PG_DATA"
  prepare_pg_socket_dir
  ensure_secret_file "$PG_SUPERUSER_PASSWORD_FILE"
  # initdb reads the superuser's password from a file its OS user can read: a private copy.
  local pwfile="$PG_ROOT/.initdb-pw"
  install_pg_file 0600 "$pwfile" <"$PG_SUPERUSER_PASSWORD_FILE"
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
      --auth=scram-sha-256 --pwfile="$pwfile" >"$PG_ROOT/initdb.log" 2>&1; then
    rm -f "$pwfile"
    tail -n 20 "$PG_ROOT/initdb.log" >&2
    die "initdb failed"
  fi
  rm -f "$pwfile"
  write_pg_hba || true
  echo "include_if_exists = 'glv.conf'" >>"$PG_DATA/postgresql.conf"
}

# The settings glv.conf asks for that only a restart applies, plus ssl, in the order
# pg_applied_settings reports them.
pg_wanted_settings() {
  echo "$HOST|$PG_PORT|$PG_SOCK|0700|200|128MB|on"
}

pg_applied_settings() {
  psql_super -d postgres -At -c "SELECT concat_ws('|', current_setting('listen_addresses'),
    current_setting('port'), current_setting('unix_socket_directories'),
    current_setting('unix_socket_permissions'), current_setting('max_connections'),
    current_setting('shared_buffers'), current_setting('ssl'))"
}

write_pg_config() {
  # Rewritten on every start so port changes apply.
  install_pg_file 0644 "$PG_DATA/glv.conf" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 128MB
password_encryption = scram-sha-256
# TLS offered on every TCP connection (clients choose: sslmode=verify-full with
# sslrootcert=$TLS_CA, or none in development).
ssl = on
ssl_cert_file = '$TLS_DIR/pg-server.crt'
ssl_key_file = '$TLS_DIR/pg-server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
}

pg_running() {
  [[ -n "$PG_BIN" && -f "$PG_DATA/postmaster.pid" ]] &&
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { pg_running && head -n 1 "$PG_DATA/postmaster.pid"; }

# As the superuser over the private socket, with its password.
psql_super() {
  PGPASSWORD="$(cat "$PG_SUPERUSER_PASSWORD_FILE")" PGOPTIONS='-c client_min_messages=warning' \
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
}

# Roles/databases per service, plus glv_test; idempotent, one psql session.
pg_provision() {
  local svc sql n extra
  sql="\\connect template1
CREATE EXTENSION IF NOT EXISTS btree_gist;
\\connect postgres
"
  for svc in "${SERVICES[@]}" test; do
    n="glv_$svc"
    extra=""
    if [[ "$svc" == test ]]; then extra=CREATEDB; fi
    sql+="SELECT format('CREATE ROLE %I LOGIN', '$n') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$n') \\gexec
ALTER ROLE $n LOGIN PASSWORD '$n' $extra;
SELECT format('CREATE DATABASE %I OWNER %I', '$n', '$n') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$n') \\gexec
\\connect $n
CREATE EXTENSION IF NOT EXISTS btree_gist;
\\connect postgres
"
  done
  psql_super -d postgres <<<"$sql" >/dev/null
}

wait_pg_ready() {
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT"; do
    ((SECONDS < deadline)) || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL not accepting connections on $HOST:$PG_PORT"; }
    sleep 0.2
  done
}

pg_ctl_start() {
  say "==> starting PostgreSQL $(basename "$(dirname "$PG_BIN")") on $HOST:$PG_PORT..."
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start >/dev/null ||
    { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
  wait_pg_ready
}

# The superuser's password file is lost or does not match: set it in single-user
# mode (the server must be down for that).
pg_reset_superuser_password() {
  say "==> superuser password in $PG_SUPERUSER_PASSWORD_FILE not accepted; resetting it (restarts PostgreSQL)"
  pg_stop fast
  ensure_secret_file "$PG_SUPERUSER_PASSWORD_FILE"
  as_pg "$PG_BIN/postgres" --single -D "$PG_DATA" postgres >/dev/null 2>>"$PG_LOG" \
    <<<"ALTER ROLE postgres PASSWORD '$(cat "$PG_SUPERUSER_PASSWORD_FILE")';" ||
    { tail -n 20 "$PG_LOG" >&2; die "could not reset the superuser password in single-user mode"; }
  pg_ctl_start
}

pg_start() {
  local hba_changed=0 applied
  ensure_pg_installed
  ensure_tls
  pg_init_once
  write_pg_config
  prepare_pg_socket_dir
  if pg_running; then
    say "==> PostgreSQL already running (pid $(pg_pid)), reusing"
    wait_pg_ready
  else
    pg_ctl_start
  fi
  # Migration from a cluster an older stack.sh made (trust on the socket): give the
  # superuser a password while trust still lets us in, then require passwords.
  if pg_hba_has_trust; then
    say "==> securing a cluster made by an older stack.sh: superuser password, scram-sha-256 everywhere, TLS"
    ensure_secret_file "$PG_SUPERUSER_PASSWORD_FILE"
    psql_super -d postgres <<<"ALTER ROLE postgres PASSWORD '$(cat "$PG_SUPERUSER_PASSWORD_FILE")';" >/dev/null
  fi
  if write_pg_hba; then hba_changed=1; fi
  if [[ ! -s "$PG_SUPERUSER_PASSWORD_FILE" ]] || ! psql_super -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    pg_reset_superuser_password
  fi
  applied="$(pg_applied_settings)"
  if [[ "$applied" != "$(pg_wanted_settings)" ]]; then
    say "==> restarting PostgreSQL to apply its settings (running: $applied)"
    pg_stop fast
    pg_ctl_start
  elif ((hba_changed)) || [[ "$TLS_DIR/pg-server.crt" -nt "$PG_DATA/postmaster.pid" ]]; then
    # pg_hba.conf and the TLS files are read again on reload (a renewed certificate too).
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null
  fi
  pg_provision
  say "    PostgreSQL ready on $HOST:$PG_PORT (scram-sha-256, TLS offered)"
}

pg_stop() {
  local mode="$1"
  find_pg_bin
  if ! pg_running; then
    say "==> PostgreSQL not running"
    return 0
  fi
  say "==> stopping PostgreSQL (-m $mode)..."
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t 60 stop >/dev/null
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local secure="$1" t0 fetch_pid=""
  t0=$(now_us)
  make_state_dir
  # Cold machine: download Kafka while apt installs PostgreSQL.
  if ! kafka_jars_ok; then
    ensure_kafka_jars &
    fetch_pid=$!
  fi
  ensure_pg_installed
  if [[ -n "$fetch_pid" ]]; then wait "$fetch_pid"; fi
  ensure_tls
  # The brokers boot in the background while PostgreSQL starts.
  kafka_use plain
  kafka_launch
  if ((secure)); then kafka_use secure && kafka_launch; fi
  pg_start
  kafka_use plain
  wait_kafka_ready
  if ((secure)); then kafka_use secure && wait_kafka_ready; fi
  local us=$(($(now_us) - t0))
  say "==> stack ready in $((us / 1000000)).$(((us / 100000) % 10)) s"
}

cmd_status() {
  local secure="$1" pid rc=0
  find_pg_bin
  kafka_use plain
  if pid="$(kafka_pid)"; then
    echo "kafka:        running (pid $pid) on $HOST:$KAFKA_PORT, Kafka $KAFKA_VERSION"
  else
    echo "kafka:        stopped"; rc=3
  fi
  kafka_use secure
  if pid="$(kafka_pid)"; then
    echo "kafka-secure: running (pid $pid) on $HOST:$KAFKA_SECURE_PORT (SASL_SSL, SCRAM-SHA-512, ACLs), controller $HOST:$KAFKA_SECURE_CONTROLLER_PORT (mutual TLS)"
  else
    echo "kafka-secure: stopped (deploy/local/stack.sh start --secure)"
    if ((secure)); then rc=3; fi
  fi
  if pid="$(pg_pid)"; then
    echo "postgres:     running (pid $pid) on $HOST:$PG_PORT (scram-sha-256, TLS), data $PG_DATA"
  else
    echo "postgres:     stopped"; rc=3
  fi
  return "$rc"
}

cmd_env() {
  local svc
  # The local stack is a development setup: services accept its plaintext listener and
  # make ephemeral secrets where none are set (production refuses both).
  echo "export GLV_ENVIRONMENT=development"
  echo "export KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT"
  for svc in "${SERVICES[@]}" test; do
    echo "export GLV_${svc^^}_DATABASE_URL=postgresql://glv_$svc:glv_$svc@$HOST:$PG_PORT/glv_$svc"
  done
  # The CA that signed PostgreSQL's certificate (sslmode=verify-full, sslrootcert=...).
  if [[ -f "$TLS_CA" ]]; then echo "export GLV_DATABASE_CA=$TLS_CA"; fi
  kafka_use secure
  if kafka_pid >/dev/null; then
    echo "export GLV_SECURE_KAFKA_BOOTSTRAP=$HOST:$KAFKA_SECURE_PORT"
    echo "export GLV_SECURE_KAFKA_CAFILE=$TLS_CA"
    echo "export GLV_SECURE_KAFKA_ADMIN_USER=$KAFKA_ADMIN_USER"
    echo "export GLV_SECURE_KAFKA_ADMIN_PASSWORD_FILE=$KAFKA_ADMIN_PASSWORD_FILE"
    echo "export GLV_SECURE_KAFKA_ADMIN_PROPERTIES=$KAFKA_ADMIN_PROPS"
  fi
}

usage() { sed -n '5,/^set /{/^#/s/^# \{0,1\}//p}' "$SELF" >&2; exit 2; }

main() {
  local secure=0
  (($# >= 1)) || usage
  if (($# == 2)); then
    [[ "$1" =~ ^(start|status)$ && "$2" == --secure ]] || usage
    secure=1
  fi
  (($# <= 2)) || usage
  case "$1" in
    start) with_lock "$@"; cmd_start "$secure" ;;
    stop) with_lock "$@"; kafka_stop_all; pg_stop fast ;;
    status) cmd_status "$secure" ;;
    env) cmd_env ;;
    kafka-start) with_lock "$@"; kafka_use plain; kafka_launch; wait_kafka_ready ;;
    kafka-stop) with_lock "$@"; kafka_use plain; kafka_stop ;;
    kafka-secure-start) with_lock "$@"; ensure_tls; kafka_use secure; kafka_launch; wait_kafka_ready ;;
    kafka-secure-stop) with_lock "$@"; kafka_use secure; kafka_stop ;;
    pg-start) with_lock "$@"; pg_start ;;
    pg-stop) with_lock "$@"; pg_stop fast ;;
    pg-stop-immediate) with_lock "$@"; pg_stop immediate ;;
    tls) with_lock "$@"; ensure_tls ;;
    install) with_lock "$@"; ensure_kafka_jars; ensure_pg_installed ;;
    kafka-lib)
      kafka_jars_ok || { with_lock "$@"; ensure_kafka_jars; }
      echo "$KAFKA_LIB" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
