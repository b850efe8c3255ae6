package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newTestBroadcast returns a broadcast reader of a campaigns topic of one
// partition on kfake holding n records (offsets 0 to n-1), running, and
// the admin client of the cluster.
func newTestBroadcast(t *testing.T, n int) (*broadcast, *kadm.Client) {
	t.Helper()
	const topic = "campaigns"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for i := range n {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := newBroadcast(topic, 1, slog.New(slog.DiscardHandler), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); b.close(); <-done })
	return b, kadm.NewClient(cl)
}

// heldFrom returns the first offset the reader holds of partition 0 and
// how many records, once it has read up to end.
func heldFrom(t *testing.T, b *broadcast, end int64) (int64, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.waitFor(ctx, map[int32]int64{0: end}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	recs := b.parts[0]
	if len(recs) == 0 {
		return -1, 0
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Offset != recs[i-1].Offset+1 {
			t.Fatalf("held records not contiguous: %d after %d", recs[i].Offset, recs[i-1].Offset)
		}
	}
	return recs[0].Offset, len(recs)
}

// TestBroadcastStartsAtReplayOffsets: the reader starts at the lowest
// replay offset of the tasks, reads again for a task that comes later with
// a lower one, and drops what no task needs once they report progress or
// go.
func TestBroadcastStartsAtReplayOffsets(t *testing.T) {
	b, _ := newTestBroadcast(t, 100)
	ctx := context.Background()
	t1, t2 := &task{p: 1}, &task{p: 2}
	if err := b.hold(ctx, t1, map[int32]int64{0: 60}); err != nil {
		t.Fatal(err)
	}
	if first, n := heldFrom(t, b, 100); first != 60 || n != 40 {
		t.Fatalf("after a hold from 60: holds %d records from %d, want 40 from 60", n, first)
	}
	// A task behind the first: the records from 20 are read again and
	// put in front.
	if err := b.hold(ctx, t2, map[int32]int64{0: 20}); err != nil {
		t.Fatal(err)
	}
	if first, n := heldFrom(t, b, 100); first != 20 || n != 80 {
		t.Fatalf("after a hold from 20: holds %d records from %d, want 80 from 20", n, first)
	}
	if got := b.since(0, 20, 100); len(got) != 80 || got[0].Offset != 20 {
		t.Fatalf("since(20) = %d records", len(got))
	}
	// t2 moves on to 70: the lowest need is t1's 60.
	b.progress(t2, []int64{70})
	if first, n := heldFrom(t, b, 100); first != 60 || n != 40 {
		t.Fatalf("after progress to 70: holds %d records from %d, want 40 from 60", n, first)
	}
	// t1 goes: t2's 70.
	b.release(t1)
	if first, n := heldFrom(t, b, 100); first != 70 || n != 30 {
		t.Fatalf("after t1's release: holds %d records from %d, want 30 from 70", n, first)
	}
	// A task with nothing left to replay needs nothing below the end.
	b.progress(t2, []int64{100})
	if _, n := heldFrom(t, b, 100); n != 0 {
		t.Fatalf("after progress to the end: holds %d records, want none", n)
	}
	// And one that comes after with a lower offset still gets them.
	t3 := &task{p: 3}
	if err := b.hold(ctx, t3, map[int32]int64{0: 90}); err != nil {
		t.Fatal(err)
	}
	if first, n := heldFrom(t, b, 100); first != 90 || n != 10 {
		t.Fatalf("after a hold from 90 with nothing held: holds %d records from %d, want 10 from 90", n, first)
	}
}

// TestBroadcastFailsWhenRecordsAreDeleted: a task whose replay offset is
// below the partition's log start offset fails its hold with an error
// naming both; one at or above it does not.
func TestBroadcastFailsWhenRecordsAreDeleted(t *testing.T) {
	b, adm := newTestBroadcast(t, 50)
	ctx := context.Background()
	deleted, err := adm.DeleteRecords(ctx, kadm.Offsets{"campaigns": {0: {Topic: "campaigns", Partition: 0, At: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := deleted.Error(); err != nil {
		t.Fatal(err)
	}
	err = b.hold(ctx, &task{p: 4}, map[int32]int64{0: 10})
	if !errors.Is(err, errCampaignsDeleted) {
		t.Fatalf("hold from 10 with the log starting at 30: %v, want errCampaignsDeleted", err)
	}
	for _, want := range []string{"partition 0 of campaigns starts at offset 30", "task 4 must replay it from offset 10"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := b.hold(ctx, &task{p: 5}, map[int32]int64{0: 30}); err != nil {
		t.Fatalf("hold from the log start: %v", err)
	}
	if first, n := heldFrom(t, b, 50); first != 30 || n != 20 {
		t.Fatalf("holds %d records from %d, want 20 from 30", n, first)
	}
}
