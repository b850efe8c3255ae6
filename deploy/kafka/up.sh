#!/usr/bin/env bash
# up.sh: start a single-node Apache Kafka (KRaft, broker and controller in one
# process) on 127.0.0.1:$SPONSOR_KAFKA_PORT (9092), controller on
# $SPONSOR_KAFKA_CONTROLLER_PORT (9093). Installs the jars if needed, formats
# the storage on first start, waits until the broker serves metadata and can
# create a topic. Idempotent: if it is already running, says so and exits 0.
set -Eeuo pipefail # -E: the ERR trap (lib.sh) also names a failing command inside a function
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

port=${SPONSOR_KAFKA_PORT:-9092}
cport=${SPONSOR_KAFKA_CONTROLLER_PORT:-9093}
dir=$SPONSOR_KAFKA_RUN_DIR/single

if pid=$(node_pid "$dir"); then
	say "already running (pid $pid) on 127.0.0.1:$port, data in $dir"
	exit 0
fi
for p in "$port" "$cport"; do
	port_open "$p" && die "127.0.0.1:$p is already taken by another process (not the node in $dir): stop it, or set SPONSOR_KAFKA_PORT / SPONSOR_KAFKA_CONTROLLER_PORT"
done

require_installed
start=$SECONDS
write_node_config "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" \
	offsets.topic.replication.factor=1 \
	offsets.topic.num.partitions=10 \
	transaction.state.log.replication.factor=1 \
	transaction.state.log.min.isr=1 \
	transaction.state.log.num.partitions=10 \
	share.coordinator.state.topic.replication.factor=1 \
	share.coordinator.state.topic.min.isr=1 \
	default.replication.factor=1 \
	min.insync.replicas=1
format_node "$dir" "$(new_cluster_id)"
start_node "$dir"
wait_port "$dir" "$port"
wait_ready "127.0.0.1:$port" 1 1 "$dir" || die "the broker is not ready (logs: $dir/logs)"
say "Kafka $SPONSOR_KAFKA_VERSION up on 127.0.0.1:$port (pid $(<"$dir/kafka.pid"), ${SECONDS}s from start, $((SECONDS - start))s for the node; data and logs in $dir)"
