#!/usr/bin/env bash
# cluster-up.sh: start a three-node Apache Kafka cluster (KRaft, each node a
# broker and a controller) for broker-failure tests. Node i (1..3) serves
# clients on 127.0.0.1:$((BASE + 2*(i-1))) and its controller on the next port;
# with the default BASE 19092: 19092/19093, 19094/19095, 19096/19097.
# Replication factor 3, min.insync.replicas 2, so one node may be down.
# Idempotent, and per node: nodes already running are left alone, stopped ones
# (cluster-down.sh --node N, or killed) are started again on their data.
set -Eeuo pipefail # -E: the ERR trap (lib.sh) also names a failing command inside a function
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

base=${SPONSOR_KAFKA_CLUSTER_BASE_PORT:-19092}
root=$SPONSOR_KAFKA_RUN_DIR/cluster
voters=""
for i in 1 2 3; do
	voters+="${voters:+,}$i@127.0.0.1:$((base + 2 * (i - 1) + 1))"
done

require_installed
start=$SECONDS
mkdir -p "$root"
[[ -f "$root/cluster.id" ]] || new_cluster_id >"$root/cluster.id"
cluster_id=$(<"$root/cluster.id")

started=()
for i in 1 2 3; do
	dir=$root/node$i bport=$((base + 2 * (i - 1))) cport=$((base + 2 * (i - 1) + 1))
	if pid=$(node_pid "$dir"); then
		say "node $i already running (pid $pid) on 127.0.0.1:$bport"
		continue
	fi
	for p in "$bport" "$cport"; do
		port_open "$p" && die "127.0.0.1:$p is already taken by another process: stop it, or set SPONSOR_KAFKA_CLUSTER_BASE_PORT"
	done
	write_node_config "$dir" "$i" "$bport" "$cport" "$voters" \
		default.replication.factor=3 \
		min.insync.replicas=2 \
		offsets.topic.replication.factor=3 \
		offsets.topic.num.partitions=10 \
		transaction.state.log.replication.factor=3 \
		transaction.state.log.min.isr=2 \
		transaction.state.log.num.partitions=10 \
		share.coordinator.state.topic.replication.factor=3 \
		share.coordinator.state.topic.min.isr=2
	format_node "$dir" "$cluster_id" &
	started+=("$i")
done
wait # the formats, in parallel: each is a JVM start
for i in "${started[@]}"; do
	[[ -f "$root/node$i/data/meta.properties" ]] || die "formatting node $i failed (logs: $root/node$i/logs/format.out)"
	start_node "$root/node$i"
done
for i in "${started[@]}"; do
	wait_port "$root/node$i" $((base + 2 * (i - 1)))
done
brokers=127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))
wait_ready "$brokers" 3 3 "$root/node1" "$root/node2" "$root/node3" || die "the cluster is not ready (node logs: $root/node*/logs)"
say "Kafka $SPONSOR_KAFKA_VERSION cluster up on $brokers (${#started[@]} node(s) started in $((SECONDS - start))s; data and logs in $root)"
