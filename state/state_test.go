package state

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// restoreChanges applies changes as partition p's changelog to s, with the
// checkpoint after them, as a restore does.
func restoreChanges(t *testing.T, s *Store, p int32, changes []Change) {
	t.Helper()
	rs := s.NewRestorer(p)
	defer rs.Close()
	for _, ch := range changes {
		if err := rs.Add(ch.Key, ch.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.Flush(int64(len(changes))); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCodecsRoundTrip(t *testing.T) {
	c := policy.Contact{Last: [3]int64{1, 0, 3}, Blocked: true, BlockAt: 9, OptedOut: false, OptAt: -5, LastSent: 1 << 40}
	got, err := DecodeContact(AppendContact(nil, &c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("contact: got %+v, %v; want %+v", got, err, c)
	}
	// With the interactions a grace keeps apart; without them the
	// encoding is the one from before they existed.
	plain := AppendContact(nil, &c)
	c.Recent = []policy.Event{{Kind: schemas.Block, At: 10}, {Kind: schemas.BotStarted, At: 1 << 41}}
	withRecent := AppendContact(nil, &c)
	if got, err := DecodeContact(withRecent); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("contact with recent interactions: got %+v, %v; want %+v", got, err, c)
	}
	if !bytes.HasPrefix(withRecent, plain) {
		t.Errorf("recent interactions change the encoding's common part: %x, %x", plain, withRecent)
	}
	r := policy.Recipient{Sent: []int64{5, 6, 7}}
	gr, err := DecodeRecipient(AppendRecipient(nil, &r))
	if err != nil || !slices.Equal(gr.Sent, r.Sent) {
		t.Fatalf("recipient: got %+v, %v; want %+v", gr, err, r)
	}
	label := "Go"
	p := policy.Progress{
		Campaign: policy.Campaign{ID: "c1", Business: "b1", SendAt: 10, ExpiresAt: 20,
			Audience: []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 7}}},
		Message: schemas.Message{Text: "hi", CTALabel: &label},
		Status:  policy.Firing, FireAt: 11, Cursor: "user-9",
	}
	gp, err := DecodeProgress(AppendProgress(nil, &p))
	if err != nil || gp.Campaign.ID != "c1" || gp.Cursor != "user-9" || gp.Status != policy.Firing ||
		*gp.Message.CTALabel != "Go" || gp.Message.CTAURL != nil || len(gp.Campaign.Audience) != 1 || gp.Campaign.Audience[0] != p.Campaign.Audience[0] {
		t.Fatalf("progress: got %+v, %v; want %+v", gp, err, p)
	}
	m := policy.Meta{Input: 42, Campaigns: []int64{3, 0, 9}, Time: 77}
	gm, err := DecodeMeta(AppendMeta(nil, &m))
	if err != nil || gm.Input != 42 || gm.Time != 77 || !slices.Equal(gm.Campaigns, m.Campaigns) {
		t.Fatalf("meta: got %+v, %v; want %+v", gm, err, m)
	}
}

func TestCodecsRejectCorrupt(t *testing.T) {
	c := policy.Contact{Last: [3]int64{1, 2, 3}}
	good := AppendContact(nil, &c)
	for name, b := range map[string][]byte{
		"empty":                     nil,
		"version":                   append([]byte{9}, good[1:]...),
		"truncated":                 good[:len(good)-1],
		"trailing":                  append(append([]byte(nil), good...), 0),
		"recent count past the end": append(append([]byte(nil), good...), 5, byte(schemas.Block), 2),
		"recent of no kind":         append(append([]byte(nil), good...), 1, 99, 2),
		"recent truncated":          append(append([]byte(nil), good...), 2, byte(schemas.Block), 2, byte(schemas.Block)),
	} {
		if _, err := DecodeContact(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := DecodeRecipient([]byte{1, 0xff, 0xff, 0xff, 0x0f}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("huge recipient count: got %v, want ErrCorrupt", err)
	}
}

// TestBatchIsInvisibleUntilCommit checks reads see the batch's own writes,
// the store sees nothing before Commit, and Close discards.
func TestBatchIsInvisibleUntilCommit(t *testing.T) {
	s := open(t)
	b := s.NewBatch(3)
	c := policy.Contact{Last: [3]int64{5, 0, 0}}
	if err := b.PutContact("u1", "b1", &c, false); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := b.Contact("u1", "b1"); err != nil || !ok || !reflect.DeepEqual(got, c) {
		t.Fatalf("read through batch: got %+v %v %v", got, ok, err)
	}
	b.Close()
	other := s.NewBatch(3)
	defer other.Close()
	if _, ok, _ := other.Contact("u1", "b1"); ok {
		t.Fatal("a closed batch's write is visible")
	}
	if cp, _ := s.Checkpoint(3); cp != -1 {
		t.Fatalf("checkpoint = %d, want -1", cp)
	}
}

// TestChangelogRestoresTheSameState replays a batch's changelog records into
// another store, partition by partition, and checks the state, the derived
// fan-out index and the checkpoint.
func TestChangelogRestoresTheSameState(t *testing.T) {
	src, dst := open(t), open(t)
	b := src.NewBatch(1)
	for _, u := range []string{"u3", "u1", "u2"} {
		c := policy.Contact{Last: [3]int64{10, 0, 0}}
		if err := b.PutContact(u, "biz", &c, false); err != nil {
			t.Fatal(err)
		}
	}
	c := policy.Contact{Last: [3]int64{1, 0, 0}}
	if err := b.PutContact("u1", "other", &c, false); err != nil {
		t.Fatal(err)
	}
	if err := b.PutErasure("u2", &policy.Erasure{At: 10, Round: 3, Fresh: []string{"other"}}); err != nil {
		t.Fatalf("erase: %v", err)
	}
	if err := b.PutMeta(&policy.Meta{Input: 7, Campaigns: []int64{1}, Time: 10}); err != nil {
		t.Fatal(err)
	}
	changes := b.Changes()
	if err := b.Commit(int64(len(changes))); err != nil {
		t.Fatal(err)
	}

	restoreChanges(t, dst, 1, changes)

	for _, s := range []*Store{src, dst} {
		rb := s.NewBatch(1)
		var users []string
		if _, done, err := rb.Audience("biz", "", 10, func(u string, _ *policy.Contact) error { users = append(users, u); return nil }); err != nil || !done {
			t.Fatalf("audience: %v %v", done, err)
		}
		if !slices.Equal(users, []string{"u1", "u2", "u3"}) {
			t.Errorf("audience of biz = %v, want [u1 u2 u3] (the store does not judge u2's erasure)", users)
		}
		if e, ok, err := rb.Erasure("u2"); err != nil || !ok || !reflect.DeepEqual(e, policy.Erasure{At: 10, Round: 3, Fresh: []string{"other"}}) {
			t.Errorf("u2's erasure marker = %+v, %v, %v; want it as written", e, ok, err)
		}
		// Resume after a cursor.
		users = nil
		rb.Audience("biz", "u2", 10, func(u string, _ *policy.Contact) error { users = append(users, u); return nil })
		if !slices.Equal(users, []string{"u3"}) {
			t.Errorf("audience after u2 = %v, want [u3]", users)
		}
		rb.Close()
		meta, _, err := s.LoadTask(1)
		if err != nil || meta.Input != 7 {
			t.Errorf("meta = %+v, %v; want Input 7", meta, err)
		}
		if cp, _ := s.Checkpoint(1); cp != int64(len(changes)) {
			t.Errorf("checkpoint = %d, want %d", cp, len(changes))
		}
		// Nothing leaked into another partition.
		if m, _, _ := s.LoadTask(2); m.Input != -1 {
			t.Errorf("partition 2 has metadata %+v", m)
		}
	}
}

func TestSweepDeletesExpiredOnly(t *testing.T) {
	s := open(t)
	put := s.NewBatch(0)
	for i, u := range []string{"a", "b", "c", "d", "e"} {
		c := policy.Contact{Last: [3]int64{int64(i + 1), 0, 0}}
		if err := put.PutContact(u, "biz", &c, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := put.Commit(1); err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch(0)
	defer b.Close()
	// The sweep reads the committed state and passes over what this batch
	// changed: "b", expired as committed, was just written again; "e",
	// not expired, was deleted here.
	fresh := policy.Contact{Last: [3]int64{2, 9, 0}}
	if err := b.PutContact("b", "biz", &fresh, true); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteContact("e", "biz"); err != nil {
		t.Fatal(err)
	}
	var cursor []byte
	deleted := 0
	for range 10 {
		next, n, err := b.SweepContacts(cursor, 1, func(_, _ string, c *policy.Contact) (bool, error) { return c.Last[0] <= 2, nil })
		if err != nil {
			t.Fatal(err)
		}
		deleted += n
		if cursor = next; cursor == nil {
			break
		}
	}
	if deleted != 1 {
		t.Fatalf("deleted %d, want 1 (a)", deleted)
	}
	var users []string
	b.Audience("biz", "", 10, func(u string, _ *policy.Contact) error { users = append(users, u); return nil })
	if !slices.Equal(users, []string{"b", "c", "d"}) {
		t.Fatalf("left %v, want [b c d]", users)
	}
	// The next batch, with "b" committed as it was written, sweeps it.
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	b2 := s.NewBatch(0)
	defer b2.Close()
	if _, n, err := b2.SweepContacts(nil, 10, func(_, _ string, c *policy.Contact) (bool, error) { return c.Last[0] <= 2, nil }); err != nil || n != 1 {
		t.Fatalf("second sweep deleted %d (%v), want 1 (b)", n, err)
	}
}

// TestBatchReadsTheDB: a batch's reads of the DB (one iterator per batch,
// SeekPrefixGE) find what earlier batches committed, in the memtable and in
// flushed tables, not what they deleted, not a key that only shares a
// prefix, and the batch's own writes over the DB's.
func TestBatchReadsTheDB(t *testing.T) {
	s := open(t)
	contact := func(at int64) *policy.Contact { return &policy.Contact{Last: [3]int64{at, 0, 0}} }
	commit := func(cp int64, fn func(b *Batch)) {
		t.Helper()
		b := s.NewBatch(2)
		fn(b)
		if err := b.Commit(cp); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	commit(1, func(b *Batch) {
		must(b.PutContact("u1", "flushed", contact(1), false))
		must(b.PutContact("u1", "deleted", contact(2), false))
	})
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	commit(2, func(b *Batch) {
		must(b.PutContact("u1", "memtable", contact(3), false))
		must(b.DeleteContact("u1", "deleted"))
		must(b.PutContact("u10", "flushed", contact(4), false)) // a user id extending u1
	})
	other := s.NewBatch(5) // another partition: none of partition 2's keys
	defer other.Close()
	if _, ok, err := other.Contact("u1", "flushed"); ok || err != nil {
		t.Errorf("partition 5 reads partition 2's contact: ok=%v err=%v", ok, err)
	}

	b := s.NewBatch(2)
	defer b.Close()
	for _, tc := range []struct {
		business string
		want     int64 // Last[0]; 0: absent
	}{{"flushed", 1}, {"memtable", 3}, {"deleted", 0}, {"never", 0}, {"flushe", 0}, {"flushed-2", 0}} {
		c, ok, err := b.Contact("u1", tc.business)
		if err != nil || ok != (tc.want != 0) || ok && c.Last[0] != tc.want {
			t.Errorf("Contact(u1, %s) = %+v, %v, %v; want Last[0] %d (0: absent)", tc.business, c, ok, err, tc.want)
		}
	}
	must(b.PutContact("u1", "flushed", contact(7), false))
	must(b.DeleteContact("u1", "memtable"))
	if c, ok, err := b.Contact("u1", "flushed"); err != nil || !ok || c.Last[0] != 7 {
		t.Errorf("after the batch's own write: %+v, %v, %v; want Last[0] 7", c, ok, err)
	}
	if _, ok, err := b.Contact("u1", "memtable"); err != nil || ok {
		t.Errorf("after the batch's own delete: ok=%v err=%v; want absent", ok, err)
	}
}

// TestFollowReadsThroughTheBatchBefore: a batch that follows one not yet in
// Pebble reads that one's changes first (values and deletions); once it
// waits for it (an iterator, its own Apply), it reads the DB, through an
// iterator opened after the apply; and Apply keeps the partition's batches
// in order.
func TestFollowReadsThroughTheBatchBefore(t *testing.T) {
	s := open(t)
	c0, c1, c3 := policy.Contact{Last: [3]int64{1, 0, 0}}, policy.Contact{Last: [3]int64{2, 0, 0}}, policy.Contact{Last: [3]int64{3, 0, 0}}
	b0 := s.NewBatch(0)
	for _, u := range []string{"u1", "u2"} {
		if err := b0.PutContact(u, "biz", &c0, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b0.Commit(1); err != nil {
		t.Fatal(err)
	}
	// b1 is committed in Kafka, not yet applied.
	b1 := s.NewBatch(0)
	if err := b1.PutContact("u1", "biz", &c1, true); err != nil {
		t.Fatal(err)
	}
	if err := b1.DeleteContact("u2", "biz"); err != nil {
		t.Fatal(err)
	}
	b2 := s.NewBatch(0)
	b2.Follow(b1)
	if got, ok, _ := b2.Contact("u1", "biz"); !ok || !reflect.DeepEqual(got, c1) {
		t.Fatalf("u1 through the batch before: %+v %v, want %+v", got, ok, c1)
	}
	if _, ok, _ := b2.Contact("u2", "biz"); ok {
		t.Fatal("u2, deleted by the batch before, is read from the DB")
	}
	if _, ok, _ := b2.Contact("u5", "biz"); ok { // opens b2's DB iterator before b1's apply
		t.Fatal("u5 exists")
	}
	if err := b1.Commit(2); err != nil {
		t.Fatal(err)
	}
	if got := audience(t, b2, "biz"); !slices.Equal(got, []string{"u1"}) { // waits for b1: reads the DB alone from here
		t.Fatalf("audience %v, want [u1]", got)
	}
	if got, ok, _ := b2.Contact("u1", "biz"); !ok || !reflect.DeepEqual(got, c1) {
		t.Fatalf("u1 from the DB after the apply: %+v %v, want %+v (an iterator opened before the apply?)", got, ok, c1)
	}
	// Apply in the background, in order: b3 follows b2, which follows
	// nothing now; the store's reads wait for both.
	if err := b2.PutContact("u3", "biz", &c0, false); err != nil {
		t.Fatal(err)
	}
	if err := b2.Apply(3); err != nil {
		t.Fatal(err)
	}
	b3 := s.NewBatch(0)
	b3.Follow(b2)
	if err := b3.PutContact("u3", "biz", &c3, true); err != nil {
		t.Fatal(err)
	}
	if err := b3.Apply(4); err != nil {
		t.Fatal(err)
	}
	if cp, err := s.Checkpoint(0); err != nil || cp != 4 {
		t.Fatalf("checkpoint %d, %v; want 4", cp, err)
	}
	if err := b3.Wait(); err != nil {
		t.Fatal(err)
	}
	rb := s.NewBatch(0)
	defer rb.Close()
	if got, ok, _ := rb.Contact("u3", "biz"); !ok || !reflect.DeepEqual(got, c3) {
		t.Fatalf("u3 = %+v %v, want the later batch's %+v", got, ok, c3)
	}
}

// TestMetaRounds: the sweep-round count round-trips, and metadata written
// before it existed decodes with 0.
func TestMetaRounds(t *testing.T) {
	m := policy.Meta{Input: 7, Campaigns: []int64{1, 2}, Time: 9, Rounds: 300}
	got, err := DecodeMeta(AppendMeta(nil, &m))
	if err != nil || got.Rounds != 300 || got.Input != 7 || !slices.Equal(got.Campaigns, m.Campaigns) {
		t.Fatalf("meta: %+v, %v", got, err)
	}
	// The encodings before: no count at the end; the count and no
	// frontier.
	e := encoder{}
	e.byte(valueVersion)
	e.int(7)
	e.int(9)
	e.uint(2)
	e.int(1)
	e.int(2)
	if got, err := DecodeMeta(e.b); err != nil || got.Rounds != 0 || got.Time != 9 || got.Replay != nil {
		t.Fatalf("meta of the encoding before: %+v, %v", got, err)
	}
	e.uint(300)
	if got, err := DecodeMeta(e.b); err != nil || got.Rounds != 300 || got.Replay != nil || got.Frontier != (policy.Key{}) {
		t.Fatalf("meta of the encoding before the frontier: %+v, %v", got, err)
	}
}

// TestMetaFrontier: the frontier and the replay offsets round-trip.
func TestMetaFrontier(t *testing.T) {
	m := policy.Meta{Input: 7, Campaigns: []int64{10, 20}, Time: 9, Rounds: 3, Frontier: policy.Key{SendAt: 1234, ID: "c9"}, Replay: []int64{4, 20}}
	got, err := DecodeMeta(AppendMeta(nil, &m))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("meta = %+v, %v; want %+v", got, err, m)
	}
}

// TestProgressSource: a campaign record's source and keep flag round-trip,
// and a record written before them decodes as kept, with no source.
func TestProgressSource(t *testing.T) {
	p := policy.Progress{Campaign: policy.Campaign{ID: "c1", Business: "b1", SendAt: 5, ExpiresAt: 9}, Status: policy.Firing, FireAt: 5, Cursor: "u3",
		Source: policy.Source{Partition: 2, Offset: 41, Time: 3}, Keep: true}
	got, err := DecodeProgress(AppendProgress(nil, &p))
	if err != nil || got.Source != p.Source || !got.Keep || got.Cursor != "u3" {
		t.Fatalf("progress = %+v, %v; want %+v", got, err, p)
	}
	p.Keep = false
	if got, err := DecodeProgress(AppendProgress(nil, &p)); err != nil || got.Keep {
		t.Fatalf("progress without keep = %+v, %v", got, err)
	}
	enc := AppendProgress(nil, &p)
	old := enc[:len(enc)-4] // before: nothing after the cursor (3 one-byte varints and the flag)
	got, err = DecodeProgress(old)
	if err != nil || got.Source != policy.NoSource || !got.Keep || got.Cursor != "u3" {
		t.Fatalf("progress of the encoding before = %+v, %v", got, err)
	}
}

// TestApplyKeepsTheOrder: batches applied in the background, each following
// the one before, reach Pebble in order, however their goroutines run.
func TestApplyKeepsTheOrder(t *testing.T) {
	s := open(t)
	var prev *Batch
	const n = 200
	for i := 1; i <= n; i++ {
		b := s.NewBatch(0)
		if prev != nil {
			b.Follow(prev)
		}
		c := policy.Contact{Last: [3]int64{int64(i), 0, 0}}
		if err := b.PutContact("u", "biz", &c, i > 1); err != nil {
			t.Fatal(err)
		}
		if got, ok, _ := b.Contact("u", "biz"); !ok || got.Last[0] != int64(i) {
			t.Fatalf("batch %d reads %+v", i, got)
		}
		if err := b.Apply(int64(i)); err != nil {
			t.Fatal(err)
		}
		prev = b
	}
	if cp, err := s.Checkpoint(0); err != nil || cp != n {
		t.Fatalf("checkpoint %d, %v; want %d", cp, err, n)
	}
	rb := s.NewBatch(0)
	defer rb.Close()
	if got, ok, _ := rb.Contact("u", "biz"); !ok || got.Last[0] != n {
		t.Fatalf("contact %+v after %d batches, want the last one's", got, n)
	}
}

// TestKeyMapping: a contact's Pebble key puts the business first, other
// keys are stored as they are, and appendChangelogKey inverts
// appendPebbleKey.
func TestKeyMapping(t *testing.T) {
	for _, k := range [][]byte{contactKey(nil, "user-1", "biz-22"), erasureKey(nil, "user-1"), recipientKey(nil, "user-1"), metaKey(nil)} {
		pk, err := appendPebbleKey(nil, 7, k)
		if err != nil {
			t.Fatal(err)
		}
		if k[0] == kindContact {
			if want := append(appendPartition(nil, 7), businessContactsPrefix(nil, "biz-22")...); !bytes.HasPrefix(pk, append(want, "user-1"...)) {
				t.Fatalf("contact's Pebble key %q, want business first", pk)
			}
		} else if !bytes.Equal(pk[prefixLen:], k) {
			t.Fatalf("Pebble key %q of %q", pk, k)
		}
		back, err := appendChangelogKey(nil, pk[prefixLen:])
		if err != nil || !bytes.Equal(back, k) {
			t.Fatalf("changelog key of %q = %q, %v; want %q", pk, back, err, k)
		}
	}
}

// TestChangesKeepTheirValues: the batch's changes are copies, so a change
// stays what it was written as when the caller's buffers, and the batch's
// own, are reused for the next writes: rewriting a key, then writing
// another, in one batch (a fan-out rewrites the contacts it delivers to).
func TestChangesKeepTheirValues(t *testing.T) {
	s := open(t)
	b := s.NewBatch(0)
	defer b.Close()
	a1 := policy.Contact{Last: [3]int64{1, 0, 0}}
	a2 := policy.Contact{Last: [3]int64{2, 0, 0}, LastSent: 2}
	other := policy.Contact{Last: [3]int64{0, 3, 0}, LastSent: 3}
	steps := []struct {
		user  string
		c     *policy.Contact
		known bool
	}{{"a", &a1, false}, {"a", &a2, true}, {"b", &other, false}, {"c", &a1, false}}
	for _, st := range steps {
		if err := b.PutContact(st.user, "biz", st.c, st.known); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]policy.Contact{"a": a2, "b": other, "c": a1}
	if len(b.Changes()) != len(want) {
		t.Fatalf("%d changes, want %d (one per key)", len(b.Changes()), len(want))
	}
	for _, ch := range b.Changes() {
		user := string(ch.Key[2 : 2+ch.Key[1]])
		got, err := DecodeContact(ch.Value)
		if err != nil {
			t.Fatalf("change of %q: %v", user, err)
		}
		if !reflect.DeepEqual(got, want[user]) {
			t.Errorf("change of %q: %+v, want %+v", user, got, want[user])
		}
	}
	// Deleting keeps a nil value: a tombstone, not an empty value.
	if err := b.DeleteContact("b", "biz"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range b.Changes() {
		if string(ch.Key[2:2+ch.Key[1]]) == "b" && ch.Value != nil {
			t.Errorf("deleted contact's change: %x, want nil", ch.Value)
		}
	}
}

// audience returns the users Audience yields for business.
func audience(t *testing.T, b *Batch, business string) []string {
	t.Helper()
	var users []string
	if _, _, err := b.Audience(business, "", 100, func(u string, _ *policy.Contact) error {
		users = append(users, u)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return users
}

// TestAudienceReadsTheBatchOnlyWhenItChangedContacts: a batch that changed
// no contact scans the DB and stays unindexed, so that the fan-out's writes
// after its scan are cheap; one that did (an interaction or an earlier
// chunk in the same transaction) scans its own writes over the DB: a
// contact added, one rewritten, one deleted.
func TestAudienceReadsTheBatchOnlyWhenItChangedContacts(t *testing.T) {
	s := open(t)
	old, fresh := policy.Contact{Last: [3]int64{1, 0, 0}}, policy.Contact{Last: [3]int64{5, 0, 0}}
	b0 := s.NewBatch(0)
	for _, u := range []string{"u1", "u2", "u3"} {
		if err := b0.PutContact(u, "biz", &old, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b0.Commit(1); err != nil {
		t.Fatal(err)
	}
	lasts := func(b *Batch) map[string]int64 {
		t.Helper()
		got := map[string]int64{}
		if _, _, err := b.Audience("biz", "", 100, func(u string, c *policy.Contact) error {
			got[u] = c.Last[0]
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}

	b1 := s.NewBatch(0)
	defer b1.Close()
	if err := b1.PutMeta(&policy.Meta{Input: 3}); err != nil { // not a contact
		t.Fatal(err)
	}
	if got, want := lasts(b1), map[string]int64{"u1": 1, "u2": 1, "u3": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("audience of a batch without contact changes = %v, want %v", got, want)
	}
	if b1.b.Indexed() {
		t.Fatal("a scan by a batch without contact changes indexed it")
	}
	// The chunk's writes after its scan, then another scan in the same
	// batch: it sees them.
	if err := b1.PutContact("u1", "biz", &fresh, true); err != nil {
		t.Fatal(err)
	}
	if err := b1.PutContact("u0", "biz", &fresh, false); err != nil {
		t.Fatal(err)
	}
	if err := b1.DeleteContact("u3", "biz"); err != nil {
		t.Fatal(err)
	}
	if got, want := lasts(b1), map[string]int64{"u0": 5, "u1": 5, "u2": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("audience of a batch with contact changes = %v, want %v", got, want)
	}
	if !b1.b.Indexed() {
		t.Fatal("a scan by a batch with contact changes did not read them through the indexed batch")
	}
}
