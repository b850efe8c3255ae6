#!/usr/bin/env bash
# cluster-down.sh [--node N] [--kill] [--wipe]: stop the cluster started by
# cluster-up.sh, or only node N (1..3) to test a broker failure.
#   --kill  SIGKILL at once (a crash) instead of a controlled shutdown
#   --wipe  delete the stopped nodes' data and logs (the whole cluster's,
#           including its cluster id, when no --node is given)
set -Eeuo pipefail # -E: the ERR trap (lib.sh) also names a failing command inside a function
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

nodes=(1 2 3) kill=false wipe=false
while (($#)); do
	case $1 in
	--node)
		[[ "${2:-}" =~ ^[123]$ ]] || die "--node takes 1, 2 or 3"
		nodes=("$2")
		shift
		;;
	--kill) kill=true ;;
	--wipe) wipe=true ;;
	*) die "usage: cluster-down.sh [--node N] [--kill] [--wipe]" ;;
	esac
	shift
done
root=$SPONSOR_KAFKA_RUN_DIR/cluster

# Send every signal first, so the nodes shut down in parallel.
running=() pids=()
for i in "${nodes[@]}"; do
	if pid=$(node_pid "$root/node$i"); then
		running+=("$i") pids[i]=$pid
		if $kill; then
			kill -KILL "$pid" 2>/dev/null || true
		else
			kill -TERM "$pid" 2>/dev/null || true
		fi
	fi
done
for i in "${nodes[@]}"; do
	stop_node "$root/node$i" || true # waits for the node if it is still up
	# stop_node stops waiting once node_pid no longer sees the process,
	# which a dying JVM may still be, with its ports open.
	[[ -z "${pids[i]:-}" ]] || wait_gone "${pids[i]}" || true
	if [[ " ${running[*]} " == *" $i "* ]]; then
		say "stopped node $i$($kill && echo ' (SIGKILL)')"
	fi
	if $wipe; then
		rm -rf "$root/node$i"
	fi
done
if $wipe && ((${#nodes[@]} == 3)); then
	rm -rf "$root"
	say "wiped $root"
fi
