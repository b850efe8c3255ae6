package kafkaconn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/kafkaconn"
)

// readerCluster is a kfake cluster with topic t of three partitions.
func readerCluster(t *testing.T) (*kfake.Cluster, []kgo.Opt) {
	t.Helper()
	c := newCluster(t, kfake.SeedTopics(3, "t"))
	return c, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
}

// produce writes values to partition p of t, in a transaction of txnID
// that it commits (or aborts) unless open, or without a transaction when
// txnID is empty. It returns the producer (open transactions stay open
// until the test ends).
func produce(t *testing.T, opts []kgo.Opt, txnID string, p int32, end kgo.TransactionEndTry, open bool, values ...string) *kgo.Client {
	t.Helper()
	ctx := context.Background()
	o := append(append([]kgo.Opt(nil), opts...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("t"))
	if txnID != "" {
		o = append(o, kgo.TransactionalID(txnID))
	}
	cl, err := kgo.NewClient(o...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if txnID != "" {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	if txnID != "" && !open {
		if err := cl.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

// readAll reads r and returns "partition:value" of each record, sorted.
func readAll(t *testing.T, r *kafkaconn.Reader) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	err := r.Read(ctx, func(rec *kgo.Record) error {
		got = append(got, fmt.Sprintf("%d:%s", rec.Partition, rec.Value))
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	slices.Sort(got)
	return got
}

func TestReadCommitted(t *testing.T) {
	_, opts := readerCluster(t)
	produce(t, opts, "", 0, kgo.TryCommit, false, "a", "b")
	produce(t, opts, "tx1", 0, kgo.TryAbort, false, "aborted")
	produce(t, opts, "tx2", 0, kgo.TryCommit, false, "c")
	produce(t, opts, "tx3", 1, kgo.TryCommit, false, "d")
	// Partition 2 stays empty.

	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := kafkaconn.ReadCommitted(ctx, opts, "t", nil, func(r *kgo.Record) error {
		got = append(got, fmt.Sprintf("%d:%s", r.Partition, r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"0:a", "0:b", "0:c", "1:d"}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}

	// Some partitions, from given offsets.
	r := &kafkaconn.Reader{Opts: opts, Topics: map[string][]int32{"t": {0, 2}}, Starts: map[string]map[int32]int64{"t": {0: 1}}}
	if got, want := readAll(t, r), []string{"0:b", "0:c"}; !slices.Equal(got, want) {
		t.Errorf("partitions 0 and 2 from offset 1 of 0: read %v, want %v", got, want)
	}
	// A start at the end reads nothing, without waiting.
	r = &kafkaconn.Reader{Opts: opts, Topics: map[string][]int32{"t": {1}}, Starts: map[string]map[int32]int64{"t": {1: 2}}}
	if got := readAll(t, r); len(got) != 0 {
		t.Errorf("from the end: read %v, want nothing", got)
	}
}

// TestReadCommittedStopsAtTheStableEnd: what is committed after Read began
// is not read, nor what an open transaction holds, and a tail of aborted
// records before an open transaction (whose marker lies past the end) does
// not keep Read waiting.
func TestReadCommittedStopsAtTheStableEnd(t *testing.T) {
	_, opts := readerCluster(t)
	produce(t, opts, "", 0, kgo.TryCommit, false, "a")
	abort := produce(t, opts, "tx1", 0, kgo.TryAbort, true, "aborted1", "aborted2")
	produce(t, opts, "tx2", 0, kgo.TryCommit, true, "open")
	if err := abort.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// Partition 0: a, aborted1, aborted2, open, (abort marker); its last
	// stable offset is that of "open".
	var positions []kafkaconn.Position
	r := &kafkaconn.Reader{Opts: opts, Topics: map[string][]int32{"t": {0}}, Quiet: 100 * time.Millisecond,
		Progress: func(p kafkaconn.Position) error { positions = append(positions, p); return nil }}
	start := time.Now()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := r.Read(ctx, func(rec *kgo.Record) error {
		got = append(got, string(rec.Value))
		if len(got) == 1 {
			// Committed after Read began: past the end.
			produce(t, opts, "", 0, kgo.TryCommit, false, "late")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Read took %s: it waited for the aborted records", el)
	}
	if len(positions) == 0 || positions[len(positions)-1] != (kafkaconn.Position{Topic: "t", Partition: 0, Next: 3, End: 3}) {
		t.Errorf("positions %+v, want the last at Next = End = 3", positions)
	}
}

func TestReadCommittedStopAndErrors(t *testing.T) {
	_, opts := readerCluster(t)
	produce(t, opts, "", 0, kgo.TryCommit, false, "a", "b", "c")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	n := 0
	if err := kafkaconn.ReadCommitted(ctx, opts, "t", nil, func(*kgo.Record) error { n++; return kafkaconn.Stop }); err != nil || n != 1 {
		t.Errorf("Stop: %d records, err %v; want 1, nil", n, err)
	}
	boom := errors.New("boom")
	if err := kafkaconn.ReadCommitted(ctx, opts, "t", nil, func(*kgo.Record) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: got %v, want %v", err, boom)
	}
	var ut *kafkaconn.UnknownTopicError
	if err := kafkaconn.ReadCommitted(ctx, opts, "nope", nil, func(*kgo.Record) error { return nil }); !errors.As(err, &ut) || ut.Topic != "nope" {
		t.Errorf("unknown topic: got %v, want an UnknownTopicError", err)
	}

	// An end inside an open transaction waits; the context ends the wait.
	produce(t, opts, "tx", 1, kgo.TryCommit, true, "open")
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	r := &kafkaconn.Reader{Opts: opts, Topics: map[string][]int32{"t": {1}}, Ends: map[string]map[int32]int64{"t": {1: 1}}}
	if err := r.Read(short, func(*kgo.Record) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting on an open transaction: got %v, want the context's error", err)
	}
}

// TestReadCommittedFollow: in Follow mode the reader goes on past the ends
// until its context is done.
func TestReadCommittedFollow(t *testing.T) {
	_, opts := readerCluster(t)
	produce(t, opts, "", 2, kgo.TryCommit, false, "before")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	r := &kafkaconn.Reader{Opts: opts, Topics: map[string][]int32{"t": {2}}, Follow: true}
	err := r.Read(ctx, func(rec *kgo.Record) error {
		got = append(got, string(rec.Value))
		switch len(got) {
		case 1:
			produce(t, opts, "tx", 2, kgo.TryCommit, false, "after")
		case 2:
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Follow ended with %v, want the context's cancellation", err)
	}
	if want := []string{"before", "after"}; !slices.Equal(got, want) {
		t.Errorf("followed %v, want %v", got, want)
	}
}
