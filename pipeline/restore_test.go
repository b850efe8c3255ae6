package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/state"
)

// TestRestoreEmptyChangelogAtOnce: a task whose group has a committed
// offset (`sponsor replay --shadow NAME` commits one before the shadow run's
// first start) and whose changelog partition holds no record, never written
// or with its records deleted, is restored at once, and the log says why it
// starts empty. It used to wait 30 s per partition for a state that no
// record would bring to the committed offset.
func TestRestoreEmptyChangelogAtOnce(t *testing.T) {
	opts, cl, adm := testCluster(t, 1, "never-written", "deleted")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// "deleted": records written, then deleted up to the end, so the
	// partition is empty but starts at 3.
	for i := range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "deleted", Key: []byte{byte(i)}, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	del := kadm.Offsets{}
	del.AddOffset("deleted", 0, 3, -1)
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}

	for _, tc := range []struct {
		changelog, level, says string
	}{
		{"never-written", "INFO", "changelog partition has no record"},
		{"deleted", "WARN", "records deleted"},
	} {
		t.Run(tc.changelog, func(t *testing.T) {
			store, err := state.Open(t.TempDir(), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			began := time.Now()
			n, meta, err := restoreUntil(ctx, adm, store, tc.changelog, 0, 5, opts, nil, log)
			took := time.Since(began)
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if n != 0 || meta.Input != -1 {
				t.Errorf("restored %d records, input offset %d; want 0 and -1 (an empty state)", n, meta.Input)
			}
			if took > 2*time.Second {
				t.Errorf("restore of an empty changelog partition took %s, want at once", took.Round(time.Millisecond))
			}
			if out := logs.String(); !strings.Contains(out, "level="+tc.level) || !strings.Contains(out, tc.says) {
				t.Errorf("log:\n%s\nwant a %s line saying %q", out, tc.level, tc.says)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testCluster starts a one-broker kfake cluster with topics of partitions
// partitions each, and returns the client options to reach it, a client
// and its admin client, all closed when the test ends.
func testCluster(t *testing.T, partitions int32, topics ...string) ([]kgo.Opt, *kgo.Client, *kadm.Client) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return opts, cl, kadm.NewClient(cl)
}
