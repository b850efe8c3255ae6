// Command testsummary reads `go test -json` events on stdin and prints what
// `go test` prints without -v (one line per package, the output of failed
// tests), then every skipped test with its reason, and how to run the
// skipped kinds: `make test` shows what it did not run. It exits 1 if a
// test or a package failed.
//
//	go test -json ./... | go run ./tools/testsummary
package main

import (
	"fmt"
	"os"
)

func main() {
	ok, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// how says how to run the tests that a skip message mentions.
var how = []struct{ mentions, run string }{
	{"-short", "drop -short (make test, not make test-short)"},
	{"KAFKA_CLUSTER_BROKERS", "make kafka-cluster-up, then KAFKA_CLUSTER_BROKERS=127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096 go test -run TestBrokerKill ./e2e/"},
	{"KAFKA_BROKERS", "make test-kafka (a single-node Apache Kafka; Java 17 and Maven)"},
	{"kcat", "make external-clients, then SPONSOR_PYTHON=... (it prints it) go test -run TestExternalClients ./e2e/"},
	{"python", "make external-clients, then SPONSOR_PYTHON=... (it prints it) go test -run TestExternalClients ./e2e/"},
	{"SPONSOR_PYTHON", "make external-clients, then SPONSOR_PYTHON=... (it prints it) go test -run TestExternalClients ./e2e/"},
}
