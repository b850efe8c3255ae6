package main

import (
	"strings"
	"testing"
)

// TestSummarize feeds the events of a passing package with a skipped test,
// a failing one and a package without tests: the summary has go test's
// lines, the failure's output, and the skip with its reason and how to run
// it.
func TestSummarize(t *testing.T) {
	events := strings.Join([]string{
		`{"Action":"run","Package":"x/e2e","Test":"TestBrokerKill"}`,
		`{"Action":"output","Package":"x/e2e","Test":"TestBrokerKill","Output":"=== RUN   TestBrokerKill\n"}`,
		`{"Action":"output","Package":"x/e2e","Test":"TestBrokerKill","Output":"    brokers_test.go:169: KAFKA_CLUSTER_BROKERS is not set\n"}`,
		`{"Action":"output","Package":"x/e2e","Test":"TestBrokerKill","Output":"--- SKIP: TestBrokerKill (0.00s)\n"}`,
		`{"Action":"skip","Package":"x/e2e","Test":"TestBrokerKill"}`,
		`{"Action":"output","Package":"x/e2e","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"pass","Package":"x/e2e","Test":"TestOK"}`,
		`{"Action":"pass","Package":"x/e2e","Elapsed":1.5}`,
		`{"Action":"output","Package":"x/state","Test":"TestBad","Output":"    store_test.go:9: got 1, want 2\n"}`,
		`{"Action":"fail","Package":"x/state","Test":"TestBad"}`,
		`{"Action":"output","Package":"x/state","Output":"FAIL\tx/state\t0.1s\n"}`,
		`{"Action":"fail","Package":"x/state","Elapsed":0.1}`,
		`{"Action":"output","Package":"x/doc","Output":"?   \tx/doc\t[no test files]\n"}`,
		`{"Action":"skip","Package":"x/doc"}`,
	}, "\n")
	var out strings.Builder
	ok, err := summarize(strings.NewReader(events), &out)
	if err != nil || ok {
		t.Fatalf("summarize = %v, %v; want a failure reported", ok, err)
	}
	for _, want := range []string{
		"ok  \tx/e2e\t1.500s\n",
		"    store_test.go:9: got 1, want 2\n",
		"FAIL\tx/state\t0.1s\n",
		"?   \tx/doc\t[no test files]\n",
		"skipped 1 test(s):\n  x/e2e TestBrokerKill: KAFKA_CLUSTER_BROKERS is not set\n",
		"to run them:\n  make kafka-cluster-up",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "TestOK") {
		t.Errorf("summary shows a passing test's output:\n%s", out.String())
	}
}
