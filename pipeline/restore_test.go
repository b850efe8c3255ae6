package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
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

// TestRestoreByIngestion: Restore of a changelog partition from far behind
// (restoreIngestMin lowered to make these few thousand records far) ingests
// sorted tables, and leaves the store with the same records, checkpoint,
// task and contact filter as the batch restore: into an empty store, over
// a stale state whose checkpoint the changelog does not hold, and over a
// state restored up to the middle (a gap). The changelog holds several
// versions of keys, deletions, and keys of every kind.
func TestRestoreByIngestion(t *testing.T) {
	opts, cl, adm := testCluster(t, 1, "changelog")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	changes := ingestChangelog(5000)
	for i, ch := range changes {
		cl.Produce(ctx, &kgo.Record{Topic: "changelog", Key: ch.Key, Value: ch.Value}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce record %d: %v", i, err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	end := int64(len(changes))
	restore := func(t *testing.T, s *state.Store, ingestMin int64) {
		t.Helper()
		defer func(old int64) { restoreIngestMin = old }(restoreIngestMin)
		restoreIngestMin = ingestMin
		n, err := Restore(ctx, adm, s, "changelog", 0, opts, nil, nil)
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if n == 0 {
			t.Fatal("restored no record")
		}
	}
	openStore := func(t *testing.T) *state.Store {
		t.Helper()
		s, err := state.Open(t.TempDir(), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	want := openStore(t)
	restore(t, want, end+1) // the batch path
	if m, _ := want.Metrics(); m.Ingest.Count != 0 {
		t.Fatalf("the batch restore ingested %d tables", m.Ingest.Count)
	}
	wantRecords := records(t, want)
	if len(wantRecords) < 100 {
		t.Fatalf("the batch restore left %d records, want a state", len(wantRecords))
	}

	for _, tc := range []struct {
		name   string
		before func(t *testing.T, s *state.Store)
	}{
		{"empty", func(*testing.T, *state.Store) {}},
		{"stale", func(t *testing.T, s *state.Store) {
			// Another state, whose checkpoint is past the changelog's end
			// (a recreated topic): rebuilt from the start.
			applyChanges(t, s, ingestChangelog(3000)[1000:], end+500)
		}},
		{"gap", func(t *testing.T, s *state.Store) {
			applyChanges(t, s, changes[:2000], 2000)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			tc.before(t, s)
			restore(t, s, 1)
			got := records(t, s)
			if strings.Join(got, "\n") != strings.Join(wantRecords, "\n") {
				t.Errorf("restored state by ingestion has %d records, the batch restore's %d; first difference at %d", len(got), len(wantRecords), firstDiff(got, wantRecords))
			}
			if m, _ := s.Metrics(); m.Ingest.Count == 0 {
				t.Error("the restore ingested no table")
			}
			wcp, _ := want.Checkpoint(0)
			gcp, err := s.Checkpoint(0)
			if err != nil || gcp != wcp || gcp != end {
				t.Errorf("checkpoint = %d, %v; want %d", gcp, err, end)
			}
			wm, _, _ := want.LoadTask(0)
			gm, _, err := s.LoadTask(0)
			if err != nil || !reflect.DeepEqual(gm, wm) {
				t.Errorf("task = %+v, %v; want %+v", gm, err, wm)
			}
			wf, _ := want.ContactFilter(0)
			gf, err := s.ContactFilter(0)
			if err != nil || gf.Keys() != wf.Keys() {
				t.Fatalf("contact filter holds %d keys (%v), want %d", gf.Keys(), err, wf.Keys())
			}
			s.EachRecord(0, func(k, _ []byte) error {
				if k[0] == 'c' && !gf.MayContain(k) {
					t.Errorf("the contact filter misses %q", k)
				}
				return nil
			})
		})
	}
}

// ingestChangelog is n changelog records of one partition: contacts of 200
// users and 10 businesses, rewritten and deleted, erasure markers, the
// task's metadata.
func ingestChangelog(n int) []state.Change {
	var out []state.Change
	for i := range n {
		u, biz := fmt.Sprintf("user-%03d", (i*7)%200), fmt.Sprintf("business-%d", i%10)
		switch i % 10 {
		case 3:
			out = append(out, state.Change{Key: state.ContactChangelogKey(u, biz)})
		case 5:
			out = append(out, state.Change{Key: state.ErasureChangelogKey(u), Value: state.AppendErasure(nil, &policy.Erasure{At: int64(i)})})
		case 8:
			out = append(out, state.Change{Key: state.MetaChangelogKey(), Value: state.AppendMeta(nil, &policy.Meta{Input: int64(i), Time: int64(i)})})
		default:
			c := policy.Contact{Last: [3]policy.Millis{int64(i), 0, 0}}
			out = append(out, state.Change{Key: state.ContactChangelogKey(u, biz), Value: state.AppendContact(nil, &c)})
		}
	}
	return out
}

// applyChanges writes changes into partition 0 of s with the batch
// restore's Restorer, with checkpoint next.
func applyChanges(t *testing.T, s *state.Store, changes []state.Change, next int64) {
	t.Helper()
	rs := s.NewRestorer(0)
	defer rs.Close()
	for _, ch := range changes {
		if err := rs.Add(ch.Key, ch.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.Flush(next); err != nil {
		t.Fatal(err)
	}
}

// records is partition 0's state as "key=value" lines of hex.
func records(t *testing.T, s *state.Store) []string {
	t.Helper()
	var out []string
	if err := s.EachRecord(0, func(k, v []byte) error {
		out = append(out, fmt.Sprintf("%x=%x", k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
