package state

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// audience returns the users Audience yields for business.
func audience(t *testing.T, b *Batch, business string) []string {
	t.Helper()
	var users []string
	if _, _, err := b.Audience(business, "", 100, func(u string, _ *policy.Contact, _ bool) error {
		users = append(users, u)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return users
}

// TestErasureHidesEarlierContacts: after an erasure the user's earlier
// contacts count for nothing (Contact, Audience, the view), in the batch
// that erased and in later ones, with and without the contact filter, and
// after a restore of the changelog; a contact made after the erasure
// counts; the sweep deletes the stale contacts and only them.
func TestErasureHidesEarlierContacts(t *testing.T) {
	for _, withFilter := range []bool{false, true} {
		name := "no filter"
		if withFilter {
			name = "filter"
		}
		t.Run(name, func(t *testing.T) {
			s := open(t)
			var f *ContactFilter
			if withFilter {
				f = NewContactFilter(16)
			}
			newBatch := func() *Batch {
				b := s.NewBatch(0)
				if f != nil {
					b.UseFilter(f)
				}
				return b
			}
			var changes []Change
			commit := func(b *Batch) {
				t.Helper()
				changes = append(changes, b.Changes()...)
				if err := b.Commit(int64(len(changes))); err != nil {
					t.Fatal(err)
				}
			}
			c := policy.Contact{Last: [3]int64{5, 0, 0}}
			b := newBatch()
			for _, biz := range []string{"b1", "b2", "b3"} {
				for _, u := range []string{"u1", "u2"} {
					if err := b.PutContact(u, biz, &c, false); err != nil {
						t.Fatal(err)
					}
				}
			}
			commit(b)

			b = newBatch()
			if err := b.PutContact("u1", "b3", &c, true); err != nil { // in this batch, before the erasure
				t.Fatal(err)
			}
			if err := b.EraseUser("u1", 5, 0); err != nil {
				t.Fatal(err)
			}
			for _, biz := range []string{"b1", "b2", "b3"} {
				if _, ok, err := b.Contact("u1", biz); err != nil || ok {
					t.Fatalf("contact u1/%s after the erasure: ok %v, %v", biz, ok, err)
				}
			}
			if _, ok, _ := b.Contact("u2", "b1"); !ok {
				t.Fatal("u2's contact is gone with u1's erasure")
			}
			// u1 contacts b2 again: that contact counts, the others still not.
			later := policy.Contact{Last: [3]int64{7, 0, 0}}
			if err := b.PutContact("u1", "b2", &later, false); err != nil {
				t.Fatal(err)
			}
			if got, ok, _ := b.Contact("u1", "b2"); !ok || !reflect.DeepEqual(got, later) {
				t.Fatalf("contact u1/b2 made after the erasure: %+v, %v", got, ok)
			}
			if _, ok, _ := b.Contact("u1", "b1"); ok {
				t.Fatal("u1/b1 counts again after u1 contacted b2")
			}
			if got := audience(t, b, "b1"); !slices.Equal(got, []string{"u2"}) {
				t.Fatalf("audience of b1 = %v, want [u2]", got)
			}
			if got := audience(t, b, "b2"); !slices.Equal(got, []string{"u1", "u2"}) {
				t.Fatalf("audience of b2 = %v, want [u1 u2]", got)
			}
			commit(b)

			check := func(s *Store, f *ContactFilter) {
				t.Helper()
				b := s.NewBatch(0)
				defer b.Close()
				if f != nil {
					b.UseFilter(f)
				}
				for biz, want := range map[string][]string{"b1": {"u2"}, "b2": {"u1", "u2"}, "b3": {"u2"}} {
					if got := audience(t, b, biz); !slices.Equal(got, want) {
						t.Errorf("audience of %s = %v, want %v", biz, got, want)
					}
				}
				v, err := s.User("u1", "", defaultPolicy(t))
				if err != nil {
					t.Fatal(err)
				}
				var bizs []string
				for _, pv := range v.Partitions {
					for _, cv := range pv.Contacts {
						bizs = append(bizs, cv.Business)
					}
				}
				if !slices.Equal(bizs, []string{"b2"}) {
					t.Errorf("view of u1: contacts with %v, want [b2]", bizs)
				}
			}
			check(s, f)
			// A restore of the changelog, and the filter it builds.
			dst := open(t)
			restoreChanges(t, dst, 0, changes)
			df, err := dst.ContactFilter(0)
			if err != nil {
				t.Fatal(err)
			}
			check(dst, df)
			check(dst, nil)

			// The sweep deletes u1's stale contacts (b1, b3), nothing else
			// (no contact is expired here).
			b = newBatch()
			var cursor []byte
			deleted := 0
			for range 100 {
				next, n, err := b.SweepContacts(cursor, 2, func(*policy.Contact) bool { return false })
				if err != nil {
					t.Fatal(err)
				}
				deleted += n
				if cursor = next; cursor == nil {
					break
				}
			}
			var gone []string
			for _, ch := range b.Changes() {
				if ch.Value == nil {
					gone = append(gone, string(ch.Key))
				}
			}
			slices.Sort(gone)
			want := []string{string(contactKey(nil, "u1", "b1")), string(contactKey(nil, "u1", "b3"))}
			if deleted != 2 || !slices.Equal(gone, want) {
				t.Fatalf("sweep deleted %d: %q, want %q", deleted, gone, want)
			}
			commit(b)
			check(s, f)
		})
	}
}

// TestErasureMarkerSweep: a marker goes once a whole sweep round began
// after it (two complete rounds more than when it was written), not before.
func TestErasureMarkerSweep(t *testing.T) {
	s := open(t)
	b := s.NewBatch(0)
	for u, round := range map[string]uint64{"old": 3, "new": 4} {
		if err := b.EraseUser(u, 10, round); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch(0)
	defer b.Close()
	if _, n, err := b.SweepErasures(nil, 10, 4, func(policy.Millis) bool { return true }); err != nil || n != 0 {
		t.Fatalf("after one more round: deleted %d, %v; want 0 (the round in progress at the erasure may have passed the contacts)", n, err)
	}
	next, n, err := b.SweepErasures(nil, 10, 5, func(policy.Millis) bool { return true })
	if err != nil || n != 1 || next != nil {
		t.Fatalf("sweep: next %q, deleted %d, %v; want nil, 1", next, n, err)
	}
	ch := b.Changes()
	if len(ch) != 1 || string(ch[0].Key) != string(erasureKey(nil, "old")) || ch[0].Value != nil {
		t.Fatalf("changes %q, want the deletion of old's marker", ch)
	}
	if _, ok, _ := b.erasure("new"); !ok {
		t.Fatal("the marker that a whole round did not follow yet went")
	}
	if _, ok, _ := b.erasure("old"); ok {
		t.Fatal("the deleted marker is still read")
	}
	if !ErasureSwept(3, 5) || ErasureSwept(3, 4) || ErasureSwept(4, 5) {
		t.Fatal("ErasureSwept is not rounds >= round + 2")
	}
}

// TestEraseTwice: a second erasure makes the contacts made between the two
// stale too; a contact made after it counts.
func TestEraseTwice(t *testing.T) {
	s := open(t)
	b := s.NewBatch(0)
	c := policy.Contact{Last: [3]int64{5, 0, 0}}
	if err := b.EraseUser("u1", 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.PutContact("u1", "b1", &c, false); err != nil { // between the two: counts
		t.Fatal(err)
	}
	if _, ok, _ := b.Contact("u1", "b1"); !ok {
		t.Fatal("the contact made after the first erasure does not count")
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch(0)
	defer b.Close()
	if err := b.EraseUser("u1", 6, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Contact("u1", "b1"); ok {
		t.Fatal("the contact made between the two erasures counts after the second")
	}
	if got := audience(t, b, "b1"); len(got) != 0 {
		t.Fatalf("audience of b1 after the second erasure: %v", got)
	}
	if err := b.PutContact("u1", "b2", &c, false); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Contact("u1", "b2"); !ok {
		t.Fatal("the contact made after the second erasure does not count")
	}
	if _, ok, _ := b.Contact("u1", "b1"); ok {
		t.Fatal("b1 counts again after u1 contacted b2")
	}
}

// TestLegacyLayoutDropped: a store written with the layout before the
// business-first contacts has those partitions dropped when opened (the
// restore rebuilds them from the changelog), keeps the others, and a
// read-only open refuses it.
func TestLegacyLayoutDropped(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := policy.Contact{Last: [3]int64{5, 0, 0}}
	b := s.NewBatch(1)
	if err := b.PutContact("u1", "b1", &c, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(3); err != nil {
		t.Fatal(err)
	}
	// Partition 2 as the older layout wrote it.
	legacy := []struct{ k, v []byte }{
		{append(appendPartition(nil, 2), contactKey(nil, "u9", "b9")...), AppendContact(nil, &c)},
		{append(appendPartition(nil, 2), 'i', 2, 'b', '9', 'u', '9'), nil},
		{append(appendPartition(nil, 2), kindCheckpoint), checkpointValue(7)},
	}
	for _, kv := range legacy {
		if err := s.db.Set(kv.k, kv.v, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := OpenReadOnly(dir, Options{}); err == nil || !strings.Contains(err.Error(), "partition 2 has the key layout of an older version") {
		t.Fatalf("read-only open of a legacy store: %v", err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cp, _ := s.Checkpoint(2); cp != -1 {
		t.Fatalf("legacy partition's checkpoint = %d, want -1 (dropped)", cp)
	}
	if ps, _ := s.Partitions(); !slices.Equal(ps, []int32{1}) {
		t.Fatalf("partitions %v, want [1]", ps)
	}
	if cp, _ := s.Checkpoint(1); cp != 3 {
		t.Fatalf("current partition's checkpoint = %d, want 3 (kept)", cp)
	}
	rb := s.NewBatch(1)
	defer rb.Close()
	if got, ok, _ := rb.Contact("u1", "b1"); !ok || !reflect.DeepEqual(got, c) {
		t.Fatalf("current partition's contact: %+v %v", got, ok)
	}
}

// TestErasureKeepsWhatCameAfter: a contact from before an erasure keeps,
// of the recent interactions a grace holds apart, those after the erasure
// (they arrived first only by the grace's reordering): Contact returns
// them as a new contact (ok false), Audience yields them with known false,
// and the sweep rewrites the contact with only them instead of deleting
// it. A late second erasure keeps the first's larger time (ErasedAt).
func TestErasureKeepsWhatCameAfter(t *testing.T) {
	s := open(t)
	b := s.NewBatch(0)
	c := policy.Contact{Last: [3]int64{5, 0, 0}, Recent: []policy.Event{{Kind: schemas.UserMessage, At: 8}, {Kind: schemas.BotStarted, At: 12}}}
	if err := b.PutContact("u1", "b1", &c, false); err != nil {
		t.Fatal(err)
	}
	old := policy.Contact{Last: [3]int64{5, 0, 0}}
	if err := b.PutContact("u1", "b2", &old, false); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(2); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch(0)
	defer b.Close()
	if err := b.EraseUser("u1", 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.EraseUser("u1", 9, 0); err != nil { // a late second erasure
		t.Fatal(err)
	}
	if at, ok, err := b.ErasedAt("u1"); err != nil || !ok || at != 10 {
		t.Fatalf("ErasedAt = %d, %v, %v; want 10, true", at, ok, err)
	}
	want := policy.Contact{Recent: []policy.Event{{Kind: schemas.BotStarted, At: 12}}}
	if got, ok, err := b.Contact("u1", "b1"); err != nil || ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Contact u1/b1 = %+v, %v, %v; want %+v, not known", got, ok, err, want)
	}
	if got, ok, _ := b.Contact("u1", "b2"); ok || !reflect.DeepEqual(got, policy.Contact{}) {
		t.Fatalf("Contact u1/b2 = %+v, %v; want nothing", got, ok)
	}
	var yielded []policy.Contact
	if _, _, err := b.Audience("b1", "", 10, func(u string, c *policy.Contact, known bool) error {
		if known {
			t.Errorf("Audience yields %s's contact from before the erasure as known", u)
		}
		yielded = append(yielded, *c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(yielded) != 1 || !reflect.DeepEqual(yielded[0], want) {
		t.Fatalf("Audience of b1 = %+v, want [%+v]", yielded, want)
	}
	if err := b.Commit(3); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch(0)
	if _, n, err := b.SweepContacts(nil, 10, func(*policy.Contact) bool { return false }); err != nil || n != 1 {
		t.Fatalf("sweep deleted %d, %v; want 1 (u1/b2)", n, err)
	}
	if err := b.Commit(4); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch(0)
	defer b.Close()
	if got, ok, err := b.Contact("u1", "b1"); err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("after the sweep, Contact u1/b1 = %+v, %v, %v; want %+v, known", got, ok, err, want)
	}
}
