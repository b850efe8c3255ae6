package txn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokers returns the Kafka to test on: KAFKA_BROKERS (a real Apache
// Kafka), or an in-process kfake cluster; and a topic name unique to the
// run (a real broker keeps its topics).
func brokers(t *testing.T) ([]string, string) {
	t.Helper()
	topic := fmt.Sprintf("txn-test-%d", time.Now().UnixNano())
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		t.Logf("real Kafka at %s, topic %s", b, topic)
		return strings.Split(b, ","), topic
	}
	kf, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kf.Close)
	return kf.ListenAddrs(), topic
}

func client(t *testing.T, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestStuckTransaction is the drill: a second producer opens a transaction
// on partition 1, writes to it and never ends it (it is not closed
// either, while the test runs), while another commits one on partition 0.
// List finds the open one, on the right partition, holding its LSO;
// Abort ends it; a read_committed consumer then sees the LSO at the HWM,
// none of the aborted records, and a record committed after them.
func TestStuckTransaction(t *testing.T) {
	addrs, topic := brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admCl := client(t, addrs)
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, topic); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}

	// A healthy transaction, committed: its producer is no longer open.
	healthy := client(t, addrs, kgo.TransactionalID(topic+"-healthy"))
	if err := healthy.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := healthy.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := healthy.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	// The stuck one: a timeout longer than the test, so that only the
	// abort ends it.
	stuckID := topic + "-stuck"
	stuck := client(t, addrs, kgo.TransactionalID(stuckID), kgo.TransactionTimeout(5*time.Minute))
	if err := stuck.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var first int64 = -1
	for i := range 3 {
		r := &kgo.Record{Topic: topic, Partition: 1, Value: fmt.Appendf(nil, "stuck-%d", i)}
		if err := stuck.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce in the open transaction: %v", err)
		}
		if first < 0 {
			first = r.Offset
		}
	}
	pid, epoch, err := stuck.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	l, err := List(ctx, adm, topic, "no-such-topic")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if l.Partitions != 2 || len(l.Open) != 1 {
		t.Fatalf("List: %d partitions, open %+v; want 2 partitions, one transaction open", l.Partitions, l.Open)
	}
	o := l.Open[0]
	if o.Topic != topic || o.Partition != 1 || o.ProducerID != pid || o.ProducerEpoch != epoch || o.StartOffset != first {
		t.Errorf("List: open %s/%d producer %d epoch %d from %d; want %s/1 producer %d epoch %d from %d",
			o.Topic, o.Partition, o.ProducerID, o.ProducerEpoch, o.StartOffset, topic, pid, epoch, first)
	}
	if !o.HoldsLSO() || o.LSO != first || o.HWM != first+3 {
		t.Errorf("List: LSO %d, HWM %d, holds the LSO %v; want LSO %d (the transaction's start), HWM %d, true", o.LSO, o.HWM, o.HoldsLSO(), first, first+3)
	}
	if o.TransactionalID != stuckID || o.State != "Ongoing" || o.Started.IsZero() || o.Timeout != 5*time.Minute {
		t.Errorf("List: transactional id %q, state %q, started %v, timeout %v; want %q, Ongoing, a start, 5m (notes: %v)",
			o.TransactionalID, o.State, o.Started, o.Timeout, stuckID, l.Notes)
	}
	if len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "no-such-topic") {
		t.Errorf("List notes %q, want one: no-such-topic does not exist", l.Notes)
	}

	if _, err := Holding(ctx, adm, topic, 0, -1); !errors.Is(err, ErrNoOpenTransaction) {
		t.Errorf("Holding on partition 0: %v, want ErrNoOpenTransaction", err)
	}
	if _, err := Holding(ctx, adm, topic, 1, pid+1); !errors.Is(err, ErrNoOpenTransaction) {
		t.Errorf("Holding on partition 1 for another producer id: %v, want ErrNoOpenTransaction", err)
	}
	h, err := Holding(ctx, adm, topic, 1, -1)
	if err != nil || h.ProducerID != pid || h.StartOffset != first {
		t.Fatalf("Holding on partition 1: %+v, %v; want producer %d from %d", h, err, pid, first)
	}

	res, err := Abort(ctx, adm, h)
	if err != nil {
		t.Fatalf("Abort: %v", err)
	}
	t.Logf("the drill: %s/%d held by producer %d epoch %d (%q, %s, timeout %s) from offset %d, LSO %d, HWM %d; abort: LSO %d -> %d (HWM %d)",
		o.Topic, o.Partition, o.ProducerID, o.ProducerEpoch, o.TransactionalID, o.State, o.Timeout, o.StartOffset, o.LSO, o.HWM, res.Before, res.After, res.HWM)
	if res.Before != first || res.After != res.HWM || res.HWM <= first+3 || len(res.Remaining) != 0 {
		t.Errorf("Abort: LSO %d -> %d, HWM %d, still open %v; want %d -> the HWM, past the 3 records and the marker, nothing open", res.Before, res.After, res.HWM, res.Remaining, first)
	}

	// Readers pass: a record committed after the abort is read, the
	// aborted ones never are.
	after := &kgo.Record{Topic: topic, Partition: 1, Value: []byte("after")}
	if err := healthy.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := healthy.ProduceSync(ctx, after).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := healthy.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = kafkaconn.ReadCommitted(ctx, []kgo.Opt{kgo.SeedBrokers(addrs...)}, topic, []int32{1}, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	})
	if err != nil {
		t.Fatalf("read_committed reader: read %q, then %v", got, err)
	}
	if len(got) != 1 {
		t.Errorf("read_committed reader read %q, want only \"after\" (the stuck records aborted)", got)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := lso.Lookup(topic, 1)
	hw, _ := hwm.Lookup(topic, 1)
	if ls.Offset != hw.Offset || ls.Offset <= after.Offset {
		t.Errorf("after the abort and a commit: LSO %d, HWM %d; want equal, past %d", ls.Offset, hw.Offset, after.Offset)
	}
}
