#!/usr/bin/env bash
# install.sh: put Apache Kafka's jars (from Maven Central, through Maven's
# default configuration) into $SPONSOR_KAFKA_HOME/lib. Idempotent: a complete
# install of the same pom.xml is left alone. See README.md.
set -Eeuo pipefail # -E: the ERR trap (lib.sh) also names a failing command inside a function
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

java_bin >/dev/null
command -v mvn >/dev/null 2>&1 ||
	die "mvn not found: install.sh fetches Kafka's jars with Maven 3 (Debian: apt-get install maven)"

# The marker names the pom and version it was made from, so editing pom.xml
# (or SPONSOR_KAFKA_VERSION) installs again.
stamp="$SPONSOR_KAFKA_VERSION $(sha256sum "$KAFKA_DEPLOY_DIR/pom.xml" | cut -d' ' -f1)"
if [[ -f "$KAFKA_LIB/.installed" && "$(<"$KAFKA_LIB/.installed")" == "$stamp" ]]; then
	say "Kafka $SPONSOR_KAFKA_VERSION already installed in $KAFKA_LIB"
	exit 0
fi

start=$SECONDS
say "installing Kafka $SPONSOR_KAFKA_VERSION into $KAFKA_LIB (Maven)"
mkdir -p "$SPONSOR_KAFKA_HOME"
# Copy into a fresh folder and rename, so an interrupted install never looks
# complete and a concurrent up.sh never sees half a class path.
tmp=$(mktemp -d "$SPONSOR_KAFKA_HOME/lib.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! mvn -q -B -f "$KAFKA_DEPLOY_DIR/pom.xml" dependency:copy-dependencies \
	-Dkafka.version="$SPONSOR_KAFKA_VERSION" -DincludeScope=runtime \
	-DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
	cat "$tmp.log" >&2
	rm -f "$tmp.log"
	die "Maven could not fetch Kafka $SPONSOR_KAFKA_VERSION (see above)"
fi
rm -f "$tmp.log"
[[ -f "$tmp/kafka_2.13-$SPONSOR_KAFKA_VERSION.jar" ]] || die "Maven finished but kafka_2.13-$SPONSOR_KAFKA_VERSION.jar is missing"
echo "$stamp" >"$tmp/.installed"
rm -rf "$KAFKA_LIB"
mv "$tmp" "$KAFKA_LIB"
trap - EXIT
say "installed $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $((SECONDS - start))s"
