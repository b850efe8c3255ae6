package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sponsored/sponsor/policy"
)

// testChangelog generates n changelog records of one partition, in
// changelog order, as a compacted changelog may hold them: several
// versions of a key, deletions of keys written before (and of keys never
// written), and keys of every kind: contacts, erasure markers, recipients,
// campaigns and the task's metadata.
func testChangelog(seed uint64, n int) []Change {
	rng := rand.New(rand.NewPCG(seed, 1))
	users := max(n/4, 1)
	var out []Change
	for i := 0; len(out) < n; i++ {
		u := fmt.Sprintf("user-%08d-%x", rng.IntN(users), seed%3)
		biz := fmt.Sprintf("business-%05d", rng.IntN(50))
		var ch Change
		switch r := rng.IntN(100); {
		case r < 60:
			c := policy.Contact{Last: [3]policy.Millis{int64(i), 0, int64(rng.IntN(1000))}, LastSent: int64(i / 2)}
			ch = Change{Key: ContactChangelogKey(u, biz), Value: AppendContact(nil, &c)}
		case r < 75:
			ch = Change{Key: ContactChangelogKey(u, biz)} // a deletion
		case r < 80:
			e := policy.Erasure{At: int64(i), Round: uint64(i % 5)}
			ch = Change{Key: ErasureChangelogKey(u), Value: AppendErasure(nil, &e)}
		case r < 83:
			ch = Change{Key: ErasureChangelogKey(u)}
		case r < 93:
			rc := policy.Recipient{Sent: []policy.Millis{int64(i)}}
			ch = Change{Key: recipientKey(nil, u), Value: AppendRecipient(nil, &rc)}
		case r < 95:
			ch = Change{Key: recipientKey(nil, u)}
		case r < 98:
			var pr policy.Progress
			pr.Campaign.ID = fmt.Sprintf("campaign-%d", rng.IntN(20))
			pr.Campaign.Business = biz
			pr.Cursor = u
			ch = Change{Key: CampaignChangelogKey(pr.Campaign.ID), Value: AppendProgress(nil, &pr)}
		default:
			m := policy.Meta{Input: int64(i), Time: int64(i), Campaigns: []int64{int64(i / 3)}}
			ch = Change{Key: MetaChangelogKey(), Value: AppendMeta(nil, &m)}
		}
		out = append(out, ch)
	}
	return out
}

// restoreBatches applies changes, the changelog from offset from, with the
// Restorer, flushing every 1000 records as the restore does.
func restoreBatches(t *testing.T, s *Store, p int32, from int64, changes []Change) {
	t.Helper()
	rs := s.NewRestorer(p)
	defer rs.Close()
	for i, ch := range changes {
		if err := rs.Add(ch.Key, ch.Value); err != nil {
			t.Fatal(err)
		}
		if rs.Len() >= 1000 || i == len(changes)-1 {
			if err := rs.Flush(from + int64(i) + 1); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// newTestIngester is an Ingester with small runs and tables, so that a
// few thousand records take several of each.
func newTestIngester(s *Store, p int32, fresh bool) *Ingester {
	in := s.NewIngester(p, fresh)
	in.runBytes = 64 << 10
	in.tableBytes = 32 << 10
	return in
}

func ingest(t *testing.T, in *Ingester, next int64, changes []Change) {
	t.Helper()
	defer in.Close()
	for _, ch := range changes {
		if err := in.Add(ch.Key, ch.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Finish(context.Background(), next); err != nil {
		t.Fatal(err)
	}
}

// dump returns every key and value the store holds of partition p, in
// order, as "key=value" lines of hex.
func dump(t *testing.T, s *Store, p int32) []string {
	t.Helper()
	prefix := appendPartition(nil, p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		out = append(out, fmt.Sprintf("%x=%x", it.Key(), it.Value()))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameState fails unless got holds exactly want's keys and values of
// partition p, and the derived views (checkpoint, task, contact filter)
// agree.
func sameState(t *testing.T, want, got *Store, p int32) {
	t.Helper()
	w, g := dump(t, want, p), dump(t, got, p)
	if len(w) == 0 {
		t.Fatal("the reference state is empty")
	}
	if len(w) != len(g) {
		t.Errorf("partition %d: %d keys after the ingest, want %d (as the batch restore)", p, len(g), len(w))
	}
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			t.Fatalf("partition %d: key %d is %s after the ingest, want %s (as the batch restore)", p, i, g[i], w[i])
		}
	}
	wcp, err1 := want.Checkpoint(p)
	gcp, err2 := got.Checkpoint(p)
	if err1 != nil || err2 != nil || wcp != gcp {
		t.Errorf("checkpoint = %d, %v; want %d, %v", gcp, err2, wcp, err1)
	}
	wm, wc, err1 := want.LoadTask(p)
	gm, gc, err2 := got.LoadTask(p)
	if err1 != nil || err2 != nil || fmt.Sprint(wm, wc) != fmt.Sprint(gm, gc) {
		t.Errorf("task = %+v %+v, %v; want %+v %+v, %v", gm, gc, err2, wm, wc, err1)
	}
	wf, err1 := want.ContactFilter(p)
	gf, err2 := got.ContactFilter(p)
	if err1 != nil || err2 != nil {
		t.Fatalf("contact filters: %v, %v", err1, err2)
	}
	if wf.Keys() != gf.Keys() {
		t.Errorf("contact filter holds %d keys, want %d", gf.Keys(), wf.Keys())
	}
	// Every contact and erasure marker the store holds passes the filter.
	contacts := 0
	for _, kind := range []byte{kindBusinessContact, kindErasure} {
		err := got.eachKey(append(appendPartition(nil, p), kind), func(k []byte) error {
			ck, err := appendChangelogKey(nil, k)
			if err != nil {
				return err
			}
			contacts++
			if !gf.MayContain(ck) {
				return fmt.Errorf("the contact filter misses %q", ck)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if contacts == 0 {
		t.Error("no contact or erasure marker in the state")
	}
}

// TestIngestMatchesBatchRestore: a fresh ingest (several runs, several
// tables) of a changelog with several versions of keys, deletions and keys
// of every kind leaves the store byte for byte as the batch restore does,
// with the same checkpoint, task and contact filter, and nothing in other
// partitions.
func TestIngestMatchesBatchRestore(t *testing.T) {
	changes := testChangelog(1, 20_000)
	want, got := open(t), open(t)
	restoreBatches(t, want, 3, 0, changes)
	in := newTestIngester(got, 3, true)
	ingest(t, in, int64(len(changes)), changes)
	if in.runs == nil {
		t.Error("the ingest sorted one run, want several (a test of the merge)")
	}
	sameState(t, want, got, 3)
	for _, p := range []int32{2, 4} {
		if d := dump(t, got, p); len(d) != 0 {
			t.Errorf("partition %d holds %d keys", p, len(d))
		}
	}
	if names, _ := got.fs.List(got.ingestDir); len(names) != 0 {
		t.Errorf("the ingest left %v", names)
	}
}

// TestIngestOneRun: a changelog that fits in memory is sorted once and
// ingested in one table.
func TestIngestOneRun(t *testing.T) {
	changes := testChangelog(2, 3000)
	want, got := open(t), open(t)
	restoreBatches(t, want, 0, 0, changes)
	in := got.NewIngester(0, true)
	ingest(t, in, int64(len(changes)), changes)
	if in.runs != nil {
		t.Errorf("the ingest wrote %d runs, want none", len(in.runs))
	}
	sameState(t, want, got, 0)
}

// TestIngestReplacesStaleState: a fresh ingest into a store that holds
// another state of the partition (a stale state folder) replaces it, and
// leaves the partitions around it as they were.
func TestIngestReplacesStaleState(t *testing.T) {
	changes := testChangelog(3, 10_000)
	stale := testChangelog(4, 10_000)
	want, got := open(t), open(t)
	restoreBatches(t, want, 5, 0, changes)
	for _, s := range []*Store{want, got} {
		restoreBatches(t, s, 4, 0, stale[:2000])
		restoreBatches(t, s, 6, 0, stale[2000:4000])
	}
	restoreBatches(t, got, 5, 0, stale)
	ingest(t, newTestIngester(got, 5, true), int64(len(changes)), changes)
	sameState(t, want, got, 5)
	sameState(t, want, got, 4)
	sameState(t, want, got, 6)
}

// TestIngestContinuesState: an ingest of the changelog after the
// checkpoint (a large gap) over the state before it leaves the store as
// the batch restore of the whole changelog: its deletions delete keys of
// the state before.
func TestIngestContinuesState(t *testing.T) {
	changes := testChangelog(5, 20_000)
	want, got := open(t), open(t)
	restoreBatches(t, want, 1, 0, changes)
	half := len(changes) / 2
	restoreBatches(t, got, 1, 0, changes[:half])
	ingest(t, newTestIngester(got, 1, false), int64(len(changes)), changes[half:])
	sameState(t, want, got, 1)
}

// TestIngestCrashBetweenTables: a crash after some of an ingest's tables
// were written leaves no new checkpoint (the state before, stale, or
// none); the store opened after it has no file of the ingest left, and the
// restore done again from the start gives the same state as the batch
// restore.
func TestIngestCrashBetweenTables(t *testing.T) {
	changes := testChangelog(6, 20_000)
	stale := testChangelog(7, 5000)
	want := open(t)
	restoreBatches(t, want, 2, 0, changes)

	for _, staleState := range []bool{false, true} {
		t.Run(fmt.Sprintf("stale=%v", staleState), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open("/state", Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			wantCP := int64(-1)
			if staleState {
				restoreBatches(t, s, 2, 0, stale)
				if err := s.db.Flush(); err != nil { // durable, as after a clean stop
					t.Fatal(err)
				}
				wantCP = int64(len(stale))
			}
			in := newTestIngester(s, 2, true)
			crash := errors.New("crash")
			var crashed *vfs.MemFS
			in.tableWritten = func(n int) error {
				if n == 2 {
					crashed = fs.CrashClone(vfs.CrashCloneCfg{})
					return crash
				}
				return nil
			}
			for _, ch := range changes {
				if err := in.Add(ch.Key, ch.Value); err != nil {
					t.Fatal(err)
				}
			}
			if err := in.Finish(context.Background(), int64(len(changes))); !errors.Is(err, crash) {
				t.Fatalf("Finish = %v, want the crash after 2 tables", err)
			}
			if crashed == nil {
				t.Fatal("no crash")
			}
			s.Close()

			s, err = Open("/state", Options{FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if cp, err := s.Checkpoint(2); err != nil || cp != wantCP {
				t.Errorf("checkpoint after the crash = %d, %v; want %d (as before the ingest)", cp, err, wantCP)
			}
			if names, err := crashed.List("/state/" + ingestFolder); err == nil && len(names) != 0 {
				t.Errorf("the store opened after the crash keeps the ingest's files %v", names)
			}
			ingest(t, newTestIngester(s, 2, true), int64(len(changes)), changes)
			sameState(t, want, s, 2)
		})
	}
}

// TestIngestRejectsAnEmptyKey as the Restorer does.
func TestIngestRejectsAnEmptyKey(t *testing.T) {
	s := open(t)
	in := s.NewIngester(0, true)
	defer in.Close()
	if err := in.Add(nil, []byte("x")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Add(empty key) = %v, want ErrCorrupt", err)
	}
	if err := in.Add([]byte{kindContact, 200}, []byte("x")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Add(bad contact key) = %v, want ErrCorrupt", err)
	}
}

// TestIngestSortsAnyOrder: a run sorts to key order, with the last version
// of each key kept, whatever order the changelog brings: random, sorted,
// reversed, one key over and over, keys longer and shorter than the
// abbreviation that differ after it or in their padding.
func TestIngestSortsAnyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	long := func(i int) []byte { return fmt.Appendf(nil, "r%s-%06d", bytes.Repeat([]byte("x"), 30), i) }
	orders := map[string]func(i int) []byte{
		"random":   func(int) []byte { return long(rng.IntN(3000)) },
		"sorted":   func(i int) []byte { return long(i / 2) },
		"reversed": func(i int) []byte { return long(100_000 - i) },
		"one key":  func(int) []byte { return []byte("m-task") },
		"short":    func(int) []byte { return append([]byte("r"), bytes.Repeat([]byte{0}, rng.IntN(30))...) },
	}
	for name, key := range orders {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			in := s.NewIngester(0, true)
			defer in.Close()
			want := map[string]string{}
			for i := range 5000 {
				k, v := key(i), fmt.Appendf(nil, "%d", i)
				if err := in.Add(k, v); err != nil {
					t.Fatal(err)
				}
				want[string(k)] = string(v)
			}
			in.sortRun()
			if len(in.ents) != len(want) {
				t.Errorf("%d records after the sort, want %d keys", len(in.ents), len(want))
			}
			for i, e := range in.ents {
				if i > 0 && bytes.Compare(in.key(in.ents[i-1]), in.key(e)) >= 0 {
					t.Fatalf("record %d: %q after %q", i, in.key(e), in.key(in.ents[i-1]))
				}
				if got := string(in.value(e)); got != want[string(in.key(e))] {
					t.Errorf("key %q has value %s, want the last, %s", in.key(e), got, want[string(in.key(e))])
				}
			}
		})
	}
}

// TestIngestNoRecord: a fresh ingest of a changelog range that holds no
// record (only transaction markers) over a stale state leaves the
// partition empty but for the checkpoint, and the other partitions as
// they were.
func TestIngestNoRecord(t *testing.T) {
	s := open(t)
	restoreBatches(t, s, 1, 0, testChangelog(8, 500))
	restoreBatches(t, s, 2, 0, testChangelog(9, 500))
	before := dump(t, s, 2)
	ingest(t, s.NewIngester(1, true), 42, nil)
	if d := dump(t, s, 1); len(d) != 1 {
		t.Errorf("partition 1 holds %v, want only its checkpoint", d)
	}
	if cp, err := s.Checkpoint(1); err != nil || cp != 42 {
		t.Errorf("checkpoint = %d, %v; want 42", cp, err)
	}
	if after := dump(t, s, 2); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("the ingest of partition 1 changed partition 2")
	}
}
