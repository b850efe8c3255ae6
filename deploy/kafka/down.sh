#!/usr/bin/env bash
# down.sh [--wipe]: stop the single node started by up.sh (SIGTERM, then
# SIGKILL after $SPONSOR_KAFKA_STOP_TIMEOUT seconds). With --wipe, also delete
# its data, logs and config, so the next up.sh starts an empty cluster.
set -Eeuo pipefail # -E: the ERR trap (lib.sh) also names a failing command inside a function
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wipe=false
for a in "$@"; do
	case $a in
	--wipe) wipe=true ;;
	*) die "usage: down.sh [--wipe]" ;;
	esac
done
dir=$SPONSOR_KAFKA_RUN_DIR/single
if stop_node "$dir"; then
	say "stopped the node in $dir"
else
	say "not running ($dir)"
fi
if $wipe; then
	rm -rf "$dir"
	say "wiped $dir"
fi
