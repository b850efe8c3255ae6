package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/topics"
)

// TestTxnListAndAbort runs the commands on the embedded Kafka with a
// transaction left open on inbox/1: list shows it holding the partition,
// abort without --yes only shows the plan (the LSO stays), with --yes it
// moves the LSO to the high watermark. (The txn package's test runs the
// same drill on Apache Kafka.)
func TestTxnListAndAbort(t *testing.T) {
	const prefix = "txn-"
	stack, flags := toolStack(t, prefix)
	inbox := topics.NewNames(prefix, "sponsor").Inbox
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stuck, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...), kgo.TransactionalID("stuck-producer"),
		kgo.TransactionTimeout(5*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := stuck.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := stuck.ProduceSync(ctx, &kgo.Record{Topic: inbox, Partition: 1, Value: []byte("held")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, _, err := stuck.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(stuck)
	lso := func() int64 {
		t.Helper()
		o, err := adm.ListCommittedOffsets(ctx, inbox)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := o.Lookup(inbox, 1)
		return l.Offset
	}

	out, _, err := runCmd(t, cmdFunc("txn"), "", append([]string{"list"}, flags...)...)
	if err != nil {
		t.Fatalf("txn list: %v", err)
	}
	t.Logf("txn list:\n%s", out)
	row := fmt.Sprintf("%s  1          %d", inbox, pid)
	if !strings.Contains(out, row) || !strings.Contains(out, "stuck-producer") || !strings.Contains(out, "partitions; 1 holds a partition") {
		t.Errorf("txn list: want a row for %s/1, producer %d, stuck-producer, and one partition held; got\n%s", inbox, pid, out)
	}

	abort := append([]string{"abort", "--topic", inbox, "--partition", "1"}, flags...)
	out, _, err = runCmd(t, cmdFunc("txn"), "", abort...)
	if err != nil {
		t.Fatalf("txn abort (plan): %v", err)
	}
	if !strings.Contains(out, fmt.Sprintf("abort marker for producer id %d", pid)) || !strings.Contains(out, "Nothing was written") {
		t.Errorf("txn abort without --yes: want the plan and nothing written, got\n%s", out)
	}
	if got := lso(); got != 0 {
		t.Fatalf("after the plan only: LSO of %s/1 is %d, want 0 (still held)", inbox, got)
	}

	out, _, err = runCmd(t, cmdFunc("txn"), "", append(abort, "--yes")...)
	if err != nil {
		t.Fatalf("txn abort --yes: %v\n%s", err, out)
	}
	t.Logf("txn abort --yes:\n%s", out)
	if !strings.Contains(out, "moved from 0 to 2 (high watermark 2)") {
		t.Errorf("txn abort --yes: want the LSO moved from 0 to 2 (the record and the marker), got\n%s", out)
	}
	if got := lso(); got != 2 {
		t.Errorf("after the abort: LSO of %s/1 is %d, want 2", inbox, got)
	}

	_, _, err = runCmd(t, cmdFunc("txn"), "", "abort", "--topic", inbox, "--partition", "0", "--brokers", strings.Join(stack.Brokers, ","))
	if err == nil || !strings.Contains(err.Error(), "no open transaction") {
		t.Errorf("txn abort on a partition nothing holds: %v, want no open transaction", err)
	}
	if _, _, err := runCmd(t, cmdFunc("txn"), "", "abort", "--brokers", strings.Join(stack.Brokers, ",")); err == nil || !strings.Contains(err.Error(), "--topic and --partition") {
		t.Errorf("txn abort with no partition: %v, want --topic and --partition are required", err)
	}
}
