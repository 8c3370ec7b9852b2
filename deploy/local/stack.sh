#!/usr/bin/env bash
# Local GLV stack without Docker: a single-node KRaft Kafka broker (jars fetched
# from Maven Central) and a private PostgreSQL cluster (Debian packages), both on
# 127.0.0.1 only, state kept outside the git tree.
#
# Usage: deploy/local/stack.sh COMMAND
#   start              start Kafka + PostgreSQL (idempotent), return when both serve
#   stop               stop both cleanly
#   status             show what runs (exit 0 if both run, 3 otherwise)
#   env                print export lines (eval "$(deploy/local/stack.sh env)")
#   kafka-start        start the broker only      kafka-stop         stop the broker only
#   pg-start           start PostgreSQL only      pg-stop            pg_ctl stop -m fast
#   pg-stop-immediate  pg_ctl stop -m immediate (crash-like, for fault tests)
#   install            fetch Kafka jars and install PostgreSQL, start nothing (CI pre-warm)
#   kafka-lib          print the Kafka lib dir (fetching it if needed); used by kafka-tool.sh
#
# Environment: GLV_STATE_DIR (/var/tmp/glv), GLV_CACHE_DIR ($HOME/.cache/glv),
#   GLV_KAFKA_PORT (59092), GLV_KAFKA_CONTROLLER_PORT (59093), GLV_PG_PORT (55432),
#   GLV_KAFKA_START_TIMEOUT (90 s), GLV_PG_START_TIMEOUT (60 s), GLV_KAFKA_STOP_TIMEOUT (30 s).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

HOST=127.0.0.1
STATE_DIR="${GLV_STATE_DIR:-/var/tmp/glv}"
CACHE_DIR="${GLV_CACHE_DIR:-$HOME/.cache/glv}"
KAFKA_PORT="${GLV_KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${GLV_KAFKA_CONTROLLER_PORT:-59093}"
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
KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_OUT="$KAFKA_LOGS/kafka.out"
# Short-lived tool JVMs: small heap, C1 only, serial GC = noticeably faster start.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  "-Dlog4j2.configurationFile=$HERE/kafka/tools-log4j2.properties")

PG_ROOT="$STATE_DIR/pg"
PG_DATA="$PG_ROOT/data"
PG_SOCK="$PG_ROOT/run"
PG_LOG="$PG_ROOT/postgres.log"
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

# ---------------------------------------------------------------- Kafka broker

# Prints the broker pid if our broker (this server.properties) is alive.
kafka_pid() {
  [[ -f "$KAFKA_PIDFILE" ]] || return 1
  local pid cmdline
  pid="$(cat "$KAFKA_PIDFILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # A recycled pid or a zombie (empty cmdline) is not our broker.
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
  [[ "$cmdline" == *"kafka.Kafka $KAFKA_PROPS"* ]] || return 1
  echo "$pid"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  # Rewritten on every start so port changes apply; the data dir is kept.
  cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
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

# KRaft storage must be formatted once with a cluster id. With static
# controller.quorum.voters, Kafka 4.x wants plain "format" (no --standalone,
# which is only for a dynamic quorum via controller.quorum.bootstrap.servers).
format_kafka_once() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  say "==> formatting KRaft storage in $KAFKA_DATA (first run only)..."
  if [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
    kafka_tool 60 kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id.tmp"
    mv "$KAFKA_DIR/cluster.id.tmp" "$KAFKA_DIR/cluster.id"
  fi
  kafka_tool 60 kafka.tools.StorageTool format --ignore-formatted \
    -t "$(cat "$KAFKA_DIR/cluster.id")" -c "$KAFKA_PROPS" >/dev/null
}

# Starts the broker in the background if needed; does not wait (see wait_kafka_ready).
kafka_launch() {
  local pid port
  if pid="$(kafka_pid)"; then
    say "==> Kafka already running (pid $pid), reusing"
    return 0
  fi
  ensure_kafka_jars
  # Fail fast instead of a long wait on a broker that cannot bind.
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
      die "port $HOST:$port is already in use by another process (see GLV_KAFKA_PORT / GLV_KAFKA_CONTROLLER_PORT)"
    fi
  done
  write_kafka_config
  format_kafka_once
  say "==> starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)..."
  echo "==== $(date -Is) start" >>"$KAFKA_OUT"
  # setsid: own session, so a Ctrl-C / SIGHUP aimed at the caller spares the broker.
  # No fork happens on the way (subshell -> setsid -> nohup -> java all exec), so $! is java.
  (
    cd "$KAFKA_DIR"
    exec setsid nohup java -Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties" \
      "-Dkafka.logs.dir=$KAFKA_LOGS" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS"
  ) >>"$KAFKA_OUT" 2>&1 </dev/null &
  echo "$!" >"$KAFKA_PIDFILE"
}

kafka_fail() {
  say "ERROR: $*"
  say "---- tail of $KAFKA_OUT"
  tail -n 25 "$KAFKA_OUT" >&2 || true
  say "---- errors in $KAFKA_LOGS/server.log"
  grep -E '^\[.*\] (ERROR|FATAL)|^Caused by' "$KAFKA_LOGS/server.log" | tail -n 15 >&2 || true
  exit 1
}

# Ready = the port accepts TCP *and* an Admin round trip (list topics) succeeds;
# the port alone opens before the broker has caught up with the controller.
wait_kafka_ready() {
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) probe="$KAFKA_DIR/probe.properties"
  until (exec 3<>"/dev/tcp/$HOST/$KAFKA_PORT") 2>/dev/null; do
    kafka_pid >/dev/null || kafka_fail "Kafka exited during startup"
    ((SECONDS < deadline)) || kafka_fail "Kafka port $KAFKA_PORT not open after ${KAFKA_START_TIMEOUT}s"
    sleep 0.2
  done
  # Short client timeouts so a dead broker is noticed between attempts.
  printf '%s\n' request.timeout.ms=5000 default.api.timeout.ms=8000 >"$probe"
  until kafka_tool 20 org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
      --command-config "$probe" --list >/dev/null 2>"$KAFKA_DIR/probe.err"; do
    kafka_pid >/dev/null || kafka_fail "Kafka exited during startup"
    ((SECONDS < deadline)) || { cat "$KAFKA_DIR/probe.err" >&2; kafka_fail "Kafka not answering after ${KAFKA_START_TIMEOUT}s"; }
    sleep 0.5
  done
  say "    Kafka ready on $HOST:$KAFKA_PORT"
}

kafka_stop() {
  local pid i
  if ! pid="$(kafka_pid)"; then
    say "==> Kafka not running"
    rm -f "$KAFKA_PIDFILE"
    return 0
  fi
  say "==> stopping Kafka (pid $pid)..."
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
  rm -f "$KAFKA_PIDFILE"
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

pg_init_once() {
  make_state_dir
  # The classic trap: a state dir under /root (0700) that postgres cannot traverse.
  as_pg test -x "$STATE_DIR" ||
    die "$STATE_DIR is not traversable by user $PG_OS_USER; point GLV_STATE_DIR elsewhere (default /var/tmp/glv)"
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  say "==> initdb $PG_DATA (first run only)..."
  mkdir -p "$PG_ROOT"
  chmod 0755 "$PG_ROOT"
  mkdir -p "$PG_DATA" "$PG_SOCK"
  chmod 0700 "$PG_DATA"
  ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_ROOT" "$PG_DATA" "$PG_SOCK"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1 ||
    { tail -n 20 "$PG_ROOT/initdb.log" >&2; die "initdb failed"; }
  # Password (scram) over TCP for the services; trust on our private unix socket so
  # the superuser (and a human debugging) gets in without a password.
  cat >"$PG_DATA/pg_hba.conf" <<EOF
# Generated by deploy/local/stack.sh
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
EOF
  echo "include_if_exists = 'glv.conf'" >>"$PG_DATA/postgresql.conf"
  ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_DATA/pg_hba.conf"
}

write_pg_config() {
  # Rewritten on every start so port changes apply.
  cat >"$PG_DATA/glv.conf" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 128MB
password_encryption = scram-sha-256
EOF
  ((EUID != 0)) || chown "$PG_OS_USER:" "$PG_DATA/glv.conf"
}

pg_running() {
  [[ -n "$PG_BIN" && -f "$PG_DATA/postmaster.pid" ]] &&
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { pg_running && head -n 1 "$PG_DATA/postmaster.pid"; }

psql_super() {
  PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
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

pg_start() {
  ensure_pg_installed
  pg_init_once
  write_pg_config
  if pg_running; then
    say "==> PostgreSQL already running (pid $(pg_pid)), reusing"
  else
    say "==> starting PostgreSQL $(basename "$(dirname "$PG_BIN")") on $HOST:$PG_PORT..."
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start >/dev/null ||
      { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
  fi
  wait_pg_ready
  pg_provision
  say "    PostgreSQL ready on $HOST:$PG_PORT"
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
  local t0 fetch_pid=""
  t0=$(now_us)
  make_state_dir
  # Cold machine: download Kafka while apt installs PostgreSQL.
  if ! kafka_jars_ok; then
    ensure_kafka_jars &
    fetch_pid=$!
  fi
  ensure_pg_installed
  if [[ -n "$fetch_pid" ]]; then wait "$fetch_pid"; fi
  # The broker boots in the background while PostgreSQL starts.
  kafka_launch
  pg_start
  wait_kafka_ready
  local us=$(($(now_us) - t0))
  say "==> stack ready in $((us / 1000000)).$(((us / 100000) % 10)) s"
}

cmd_status() {
  local pid rc=0
  find_pg_bin
  if pid="$(kafka_pid)"; then
    echo "kafka:    running (pid $pid) on $HOST:$KAFKA_PORT, Kafka $KAFKA_VERSION"
  else
    echo "kafka:    stopped"; rc=3
  fi
  if pid="$(pg_pid)"; then
    echo "postgres: running (pid $pid) on $HOST:$PG_PORT, data $PG_DATA"
  else
    echo "postgres: stopped"; rc=3
  fi
  return "$rc"
}

cmd_env() {
  local svc
  echo "export KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT"
  for svc in "${SERVICES[@]}" test; do
    echo "export GLV_${svc^^}_DATABASE_URL=postgresql://glv_$svc:glv_$svc@$HOST:$PG_PORT/glv_$svc"
  done
}

usage() { sed -n '5,/^set /{/^#/s/^# \{0,1\}//p}' "$SELF" >&2; exit 2; }

main() {
  (($# == 1)) || usage
  case "$1" in
    start) with_lock "$@"; cmd_start ;;
    stop) with_lock "$@"; kafka_stop; pg_stop fast ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kafka-start) with_lock "$@"; kafka_launch; wait_kafka_ready ;;
    kafka-stop) with_lock "$@"; kafka_stop ;;
    pg-start) with_lock "$@"; pg_start ;;
    pg-stop) with_lock "$@"; pg_stop fast ;;
    pg-stop-immediate) with_lock "$@"; pg_stop immediate ;;
    install) with_lock "$@"; ensure_kafka_jars; ensure_pg_installed ;;
    kafka-lib)
      kafka_jars_ok || { with_lock "$@"; ensure_kafka_jars; }
      echo "$KAFKA_LIB" ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

main "$@"
