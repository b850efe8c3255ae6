# shellcheck shell=bash
# Shared by install.sh, up.sh, down.sh, cluster-up.sh and cluster-down.sh:
# where things live, and how one KRaft node is formatted, started and stopped.
# Every setting is an environment variable, documented in README.md.

KAFKA_DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A command that fails under set -e says where, instead of ending the script
# in silence.
trap 'echo "kafka: ${BASH_SOURCE[0]##*/}:$LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

die() { echo "kafka: $*" >&2; exit 1; }
say() { echo "kafka: $*" >&2; }

# The Kafka release; the default is the one pinned in pom.xml.
SPONSOR_KAFKA_VERSION=${SPONSOR_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_DEPLOY_DIR/pom.xml")}
# Where install.sh puts the jars (lib/); one folder per version.
SPONSOR_KAFKA_HOME=${SPONSOR_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sponsor-kafka/$SPONSOR_KAFKA_VERSION}
# Where running nodes keep data, logs, config and pid files.
SPONSOR_KAFKA_RUN_DIR=${SPONSOR_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/sponsor-kafka-$(id -u)}
SPONSOR_KAFKA_HEAP=${SPONSOR_KAFKA_HEAP:--Xms256m -Xmx1g}
SPONSOR_KAFKA_START_TIMEOUT=${SPONSOR_KAFKA_START_TIMEOUT:-120}
SPONSOR_KAFKA_STOP_TIMEOUT=${SPONSOR_KAFKA_STOP_TIMEOUT:-60}
KAFKA_LIB=$SPONSOR_KAFKA_HOME/lib

# java_bin prints the java to use (JAVA_HOME first) and checks it is 17+.
java_bin() {
	local java
	if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
		java=$JAVA_HOME/bin/java
	elif command -v java >/dev/null 2>&1; then
		java=$(command -v java)
	else
		die "java not found: Kafka $SPONSOR_KAFKA_VERSION needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless), or set JAVA_HOME"
	fi
	local v
	v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
	if [[ -z "$v" || "${v%%.*}" -lt 17 ]]; then
		die "$java is Java ${v:-unknown}: Kafka $SPONSOR_KAFKA_VERSION brokers need Java 17 or newer; set JAVA_HOME to one"
	fi
	echo "$java"
}

require_installed() {
	[[ -f "$KAFKA_LIB/.installed" ]] || "$KAFKA_DEPLOY_DIR/install.sh"
}

# node_pid DIR prints the pid of the node in DIR if it is running.
node_pid() {
	local pidfile=$1/kafka.pid pid
	[[ -f "$pidfile" ]] || return 1
	pid=$(<"$pidfile")
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	# A recycled pid is not our broker.
	grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# new_cluster_id prints a random Kafka cluster id (16 bytes, base64url, no
# padding), what `kafka-storage.sh random-uuid` prints, without starting a JVM.
# Like Kafka's own, it never starts with '-': `kafka-storage format -t -x...`
# takes such an id for an option and fails ("argument --cluster-id/-t:
# expected one argument"), which one fresh cluster in 64 hit (a CI run did).
new_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ $id == -* ]] || break
	done
	printf '%s' "$id"
}

# write_node_config DIR NODE_ID BROKER_PORT CONTROLLER_PORT VOTERS [EXTRA...]
# writes DIR/server.properties for a combined broker+controller node.
write_node_config() {
	local dir=$1 id=$2 bport=$3 cport=$4 voters=$5
	shift 5
	mkdir -p "$dir/data" "$dir/logs"
	{
		echo "# Written by deploy/kafka/lib.sh; rewritten at every start."
		echo "process.roles=broker,controller"
		echo "node.id=$id"
		echo "controller.quorum.voters=$voters"
		echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
		echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport"
		echo "controller.listener.names=CONTROLLER"
		echo "inter.broker.listener.name=PLAINTEXT"
		echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
		echo "log.dirs=$dir/data"
		echo "num.partitions=1"
		echo "auto.create.topics.enable=false"
		echo "group.initial.rebalance.delay.ms=0"
		printf '%s\n' "$@"
	} >"$dir/server.properties"
}

# format_node DIR CLUSTER_ID formats DIR/data once (kafka-storage.sh format).
format_node() {
	local dir=$1 cluster_id=$2 java
	[[ -f "$dir/data/meta.properties" ]] && return 0
	java=$(java_bin)
	"$java" -Xmx256m -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" \
		-Dkafka.logs.dir="$dir/logs" -cp "$KAFKA_LIB/*" \
		kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
		>"$dir/logs/format.out" 2>&1 ||
		die "formatting $dir/data failed: $(tail -5 "$dir/logs/format.out")"
}

# start_node DIR starts the node configured in DIR/server.properties in the
# background and writes DIR/kafka.pid.
start_node() {
	local dir=$1 java
	java=$(java_bin)
	# shellcheck disable=SC2086 # SPONSOR_KAFKA_HEAP is a list of JVM flags.
	nohup setsid "$java" $SPONSOR_KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" \
		-Dkafka.logs.dir="$dir/logs" \
		-cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" \
		>"$dir/logs/kafka.out" 2>&1 </dev/null &
	echo $! >"$dir/kafka.pid"
}

# wait_port DIR PORT waits until the node in DIR listens on PORT, failing
# early (with its last log lines) if it exits.
#
# It checks the process by its pid alone, not with node_pid: just after
# start_node the background child may not have exec'd java yet, so its
# command line is still this shell's, and node_pid (which looks for
# kafka.Kafka in it) would call a starting node dead. That race made
# up.sh and cluster-up.sh exit now and then right after starting a node.
wait_port() {
	local dir=$1 port=$2 deadline=$((SECONDS + SPONSOR_KAFKA_START_TIMEOUT)) pid
	pid=$(<"$dir/kafka.pid")
	until port_open "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			{ tail -20 "$dir/logs/server.log" "$dir/logs/kafka.out" 2>/dev/null || true; } >&2
			die "the node in $dir exited during start-up (logs: $dir/logs)"
		fi
		((SECONDS < deadline)) || die "the node in $dir does not listen on $port after ${SPONSOR_KAFKA_START_TIMEOUT}s (logs: $dir/logs)"
		sleep 0.2
	done
}

# wait_ready BROKERS N waits until the cluster answers metadata requests with
# N brokers and can create and delete a topic. It uses waitkafka (Go, kadm)
# when go is on PATH and SPONSOR_KAFKA_WAIT is not "tcp"; otherwise the
# listening port was all it checked.
# The node folders that follow, if any, are where to look when it fails: it
# prints the last warnings and errors of each node's log.
wait_ready() {
	local brokers=$1 n=$2 rf=$3 dir
	shift 3
	if [[ "${SPONSOR_KAFKA_WAIT:-go}" == tcp ]] || ! command -v go >/dev/null 2>&1; then
		say "listening (metadata not checked: SPONSOR_KAFKA_WAIT=tcp or no go on PATH)"
		return 0
	fi
	(cd "$KAFKA_DEPLOY_DIR" && go run ./waitkafka -brokers "$brokers" -expect-brokers "$n" \
		-replication-factor "$rf" -timeout "${SPONSOR_KAFKA_START_TIMEOUT}s") && return 0
	for dir in "$@"; do
		say "$dir: $(node_pid "$dir" >/dev/null && echo running || echo 'not running'); last warnings and errors of $dir/logs/server.log:"
		grep -E '\] (WARN|ERROR) ' "$dir/logs/server.log" 2>/dev/null | tail -n 12 >&2 || true
		tail -n 3 "$dir/logs/kafka.out" >&2 2>/dev/null || true
	done
	return 1
}

# wait_gone PID waits until process PID has exited: gone, or a zombie with
# no thread left (its files closed). A killed JVM loses its command line (so
# node_pid no longer sees it), and its main thread turns zombie, while its
# other threads still exit and its sockets are still open: without this wait
# a killed broker could still accept connections, and cluster-up.sh would
# find its ports taken.
wait_gone() {
	local pid=$1 deadline=$((SECONDS + 30)) st tasks
	while [[ -e /proc/$pid ]]; do
		st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || true
		tasks=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || true
		[[ "$st" == Z && "$tasks" -le 1 ]] && return 0
		((SECONDS < deadline)) || { say "process $pid has not exited after 30s"; return 1; }
		sleep 0.05
	done
}

# stop_node DIR stops the node in DIR: SIGTERM (a controlled shutdown),
# then SIGKILL after SPONSOR_KAFKA_STOP_TIMEOUT seconds.
stop_node() {
	local dir=$1 pid deadline
	pid=$(node_pid "$dir") || { rm -f "$dir/kafka.pid"; return 1; }
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + SPONSOR_KAFKA_STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			say "node $dir (pid $pid) still up after ${SPONSOR_KAFKA_STOP_TIMEOUT}s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" || true
			break
		fi
		sleep 0.2
	done
	rm -f "$dir/kafka.pid"
}
