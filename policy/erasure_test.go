package policy_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// The erasure rule (policy.Erasure and the partition's use of it) over the
// runtime's store: the reads pass over what an erasure covers, in the batch
// that erased and in later ones, with and without the contact filter and
// after a restore of the changelog, and the sweeps delete it.

// openStore opens a store in memory.
func openStore(t testing.TB) *state.Store {
	t.Helper()
	s, err := state.Open("/state", state.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// erasing returns a partition of the default rules working on b, for
// calling the erasure rule's hooks directly.
func erasing(t *testing.T, b *state.Batch) *policy.Partition {
	t.Helper()
	pol, err := policy.New(policy.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := policy.NewPartition(pol)
	p.Begin(b, discard{}, 0)
	return p
}

// discard is an Output that keeps nothing.
type discard struct{}

func (discard) Chunking(*policy.Progress)                             {}
func (discard) Decided(*policy.Progress, string, policy.Reason) error { return nil }
func (discard) Chunked(*policy.Progress, policy.Chunk) error          { return nil }
func (discard) Counted(policy.Tally, schemas.InteractionKind)         {}
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// contactOf returns the contact as the rules see it (known), and what it
// holds.
func contactOf(t *testing.T, p *policy.Partition, user, business string) (policy.Contact, bool) {
	t.Helper()
	c, known, _, _, err := policy.Lookup(p, user, business)
	must(t, err)
	return c, known
}

// audienceOf returns the users the partition's audience of business
// yields.
func audienceOf(t *testing.T, p *policy.Partition, business string) []string {
	t.Helper()
	var users []string
	_, _, err := policy.AudienceOf(p, business, "", 100, func(u string, _ *policy.Contact, _ bool) error {
		users = append(users, u)
		return nil
	})
	must(t, err)
	return users
}

// TestErasureHidesEarlierContacts: after an erasure the user's earlier
// contacts count for nothing (lookup, audience, the state view), in the
// batch that erased and in later ones, with and without the contact
// filter, and after a restore of the changelog; a contact made after the
// erasure counts; the sweep deletes the stale contacts and only them.
func TestErasureHidesEarlierContacts(t *testing.T) {
	pol, err := policy.New(policy.DefaultConfig())
	must(t, err)
	for _, withFilter := range []bool{false, true} {
		name := "no filter"
		if withFilter {
			name = "filter"
		}
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			var f *state.ContactFilter
			if withFilter {
				f = state.NewContactFilter(16)
			}
			newBatch := func(s *state.Store, f *state.ContactFilter) *state.Batch {
				b := s.NewBatch(0)
				if f != nil {
					b.UseFilter(f)
				}
				return b
			}
			var changes []state.Change
			commit := func(b *state.Batch) {
				t.Helper()
				changes = append(changes, b.Changes()...)
				must(t, b.Commit(int64(len(changes))))
			}
			c := policy.Contact{Last: [3]int64{5, 0, 0}}
			b := newBatch(s, f)
			p := erasing(t, b)
			for _, biz := range []string{"b1", "b2", "b3"} {
				for _, u := range []string{"u1", "u2"} {
					must(t, policy.PutContact(p, u, biz, &c, false))
				}
			}
			commit(b)

			b = newBatch(s, f)
			p = erasing(t, b)
			must(t, policy.PutContact(p, "u1", "b3", &c, true)) // in this batch, before the erasure
			must(t, policy.EraseUser(p, "u1", 5))
			for _, biz := range []string{"b1", "b2", "b3"} {
				if _, ok := contactOf(t, p, "u1", biz); ok {
					t.Fatalf("contact u1/%s after the erasure is known", biz)
				}
			}
			if _, ok := contactOf(t, p, "u2", "b1"); !ok {
				t.Fatal("u2's contact is gone with u1's erasure")
			}
			// u1 contacts b2 again: that contact counts, the others still not.
			later := policy.Contact{Last: [3]int64{7, 0, 0}}
			must(t, policy.PutContact(p, "u1", "b2", &later, false))
			if got, ok := contactOf(t, p, "u1", "b2"); !ok || !reflect.DeepEqual(got, later) {
				t.Fatalf("contact u1/b2 made after the erasure: %+v, %v", got, ok)
			}
			if _, ok := contactOf(t, p, "u1", "b1"); ok {
				t.Fatal("u1/b1 counts again after u1 contacted b2")
			}
			if got := audienceOf(t, p, "b1"); !slices.Equal(got, []string{"u2"}) {
				t.Fatalf("audience of b1 = %v, want [u2]", got)
			}
			if got := audienceOf(t, p, "b2"); !slices.Equal(got, []string{"u1", "u2"}) {
				t.Fatalf("audience of b2 = %v, want [u1 u2]", got)
			}
			commit(b)

			check := func(s *state.Store, f *state.ContactFilter) {
				t.Helper()
				b := newBatch(s, f)
				defer b.Close()
				p := erasing(t, b)
				for biz, want := range map[string][]string{"b1": {"u2"}, "b2": {"u1", "u2"}, "b3": {"u2"}} {
					if got := audienceOf(t, p, biz); !slices.Equal(got, want) {
						t.Errorf("audience of %s = %v, want %v", biz, got, want)
					}
				}
				v, err := s.User("u1", "", pol)
				must(t, err)
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
			dst := openStore(t)
			rs := dst.NewRestorer(0)
			for _, ch := range changes {
				must(t, rs.Add(ch.Key, ch.Value))
			}
			must(t, rs.Flush(int64(len(changes))))
			rs.Close()
			df, err := dst.ContactFilter(0)
			must(t, err)
			check(dst, df)
			check(dst, nil)

			// The sweep deletes u1's stale contacts (b1, b3), nothing else
			// (no contact is expired here).
			b = newBatch(s, f)
			p = erasing(t, b)
			var cursor []byte
			for range 100 {
				next, err := policy.SweepContacts(p, cursor, 2, func(*policy.Contact) bool { return false })
				must(t, err)
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
			want := []string{string(state.ContactChangelogKey("u1", "b1")), string(state.ContactChangelogKey("u1", "b3"))}
			if !slices.Equal(gone, want) || len(b.Changes()) != len(want) {
				t.Fatalf("sweep changed %q, deleted %q; want the deletions %q", b.Changes(), gone, want)
			}
			commit(b)
			check(s, f)
		})
	}
}

// TestErasureMarkerSweep: a marker goes once a whole sweep round began
// after it (two complete rounds more than when it was written), not before.
func TestErasureMarkerSweep(t *testing.T) {
	s := openStore(t)
	b := s.NewBatch(0)
	p := erasing(t, b)
	for u, round := range map[string]uint64{"old": 3, "new": 4} {
		p.SetRounds(round)
		must(t, policy.EraseUser(p, u, 10))
	}
	must(t, b.Commit(1))
	b = s.NewBatch(0)
	defer b.Close()
	p = erasing(t, b)
	forgotten := func(policy.Millis) bool { return true }
	p.SetRounds(4)
	if next, err := policy.SweepErasures(p, nil, 10, forgotten); err != nil || next != nil || len(b.Changes()) != 0 {
		t.Fatalf("after one more round: changes %q, next %q, %v; want none (the round in progress at the erasure may have passed the contacts)", b.Changes(), next, err)
	}
	p.SetRounds(5)
	next, err := policy.SweepErasures(p, nil, 10, forgotten)
	if err != nil || next != nil {
		t.Fatalf("sweep: next %q, %v; want nil", next, err)
	}
	ch := b.Changes()
	if len(ch) != 1 || string(ch[0].Key) != string(state.ErasureChangelogKey("old")) || ch[0].Value != nil {
		t.Fatalf("changes %q, want the deletion of old's marker", ch)
	}
	if _, ok, _ := b.Erasure("new"); !ok {
		t.Fatal("the marker that a whole round did not follow yet went")
	}
	if _, ok, _ := b.Erasure("old"); ok {
		t.Fatal("the deleted marker is still read")
	}
	if !policy.ErasureSwept(3, 5) || policy.ErasureSwept(3, 4) || policy.ErasureSwept(4, 5) {
		t.Fatal("ErasureSwept is not rounds >= round + 2")
	}
}

// TestErasureMarkerKeptForFreshContact: a marker whose user has a contact
// made after the erasure stays however old it is; once that contact is
// gone, it goes.
func TestErasureMarkerKeptForFreshContact(t *testing.T) {
	s := openStore(t)
	b := s.NewBatch(0)
	p := erasing(t, b)
	must(t, policy.EraseUser(p, "u1", 10))
	c := policy.Contact{Last: [3]int64{20, 0, 0}}
	must(t, policy.PutContact(p, "u1", "b1", &c, false))
	must(t, b.Commit(1))

	b = s.NewBatch(0)
	p = erasing(t, b)
	p.SetRounds(2)
	forgotten := func(policy.Millis) bool { return true }
	if _, err := policy.SweepErasures(p, nil, 10, forgotten); err != nil || len(b.Changes()) != 0 {
		t.Fatalf("changes %q, %v; want the marker kept while u1/b1 (made after it) is there", b.Changes(), err)
	}
	must(t, b.DeleteContact("u1", "b1"))
	must(t, b.Commit(2))

	b = s.NewBatch(0)
	defer b.Close()
	p = erasing(t, b)
	p.SetRounds(2)
	if _, err := policy.SweepErasures(p, nil, 10, forgotten); err != nil || len(b.Changes()) != 1 {
		t.Fatalf("changes %q, %v; want the marker's deletion once u1/b1 is gone", b.Changes(), err)
	}
}

// TestEraseTwice: a second erasure makes the contacts made between the two
// stale too; a contact made after it counts.
func TestEraseTwice(t *testing.T) {
	s := openStore(t)
	b := s.NewBatch(0)
	p := erasing(t, b)
	c := policy.Contact{Last: [3]int64{5, 0, 0}}
	must(t, policy.EraseUser(p, "u1", 1))
	must(t, policy.PutContact(p, "u1", "b1", &c, false)) // between the two: counts
	if _, ok := contactOf(t, p, "u1", "b1"); !ok {
		t.Fatal("the contact made after the first erasure does not count")
	}
	must(t, b.Commit(1))
	b = s.NewBatch(0)
	defer b.Close()
	p = erasing(t, b)
	must(t, policy.EraseUser(p, "u1", 6))
	if _, ok := contactOf(t, p, "u1", "b1"); ok {
		t.Fatal("the contact made between the two erasures counts after the second")
	}
	if got := audienceOf(t, p, "b1"); len(got) != 0 {
		t.Fatalf("audience of b1 after the second erasure: %v", got)
	}
	must(t, policy.PutContact(p, "u1", "b2", &c, false))
	if _, ok := contactOf(t, p, "u1", "b2"); !ok {
		t.Fatal("the contact made after the second erasure does not count")
	}
	if _, ok := contactOf(t, p, "u1", "b1"); ok {
		t.Fatal("b1 counts again after u1 contacted b2")
	}
}

// TestErasureKeepsWhatCameAfter: a contact from before an erasure keeps,
// of the recent interactions a grace holds apart, those after the erasure
// (they arrived first only by the grace's reordering): the lookup returns
// them as a new contact (known false), the audience yields them with known
// false, and the sweep rewrites the contact with only them instead of
// deleting it. A late second erasure keeps the first's larger time.
func TestErasureKeepsWhatCameAfter(t *testing.T) {
	s := openStore(t)
	b := s.NewBatch(0)
	p := erasing(t, b)
	c := policy.Contact{Last: [3]int64{5, 0, 0}, Recent: []policy.Event{{Kind: schemas.UserMessage, At: 8}, {Kind: schemas.BotStarted, At: 12}}}
	must(t, policy.PutContact(p, "u1", "b1", &c, false))
	old := policy.Contact{Last: [3]int64{5, 0, 0}}
	must(t, policy.PutContact(p, "u1", "b2", &old, false))
	must(t, b.Commit(2))

	b = s.NewBatch(0)
	p = erasing(t, b)
	must(t, policy.EraseUser(p, "u1", 10))
	must(t, policy.EraseUser(p, "u1", 9)) // a late second erasure
	if _, _, e, erased, err := policy.Lookup(p, "u1", "b1"); err != nil || !erased || e.At != 10 {
		t.Fatalf("erasure = %+v, %v, %v; want at 10", e, erased, err)
	}
	want := policy.Contact{Recent: []policy.Event{{Kind: schemas.BotStarted, At: 12}}}
	if got, ok := contactOf(t, p, "u1", "b1"); ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("u1/b1 = %+v, %v; want %+v, not known", got, ok, want)
	}
	if got, ok := contactOf(t, p, "u1", "b2"); ok || !reflect.DeepEqual(got, policy.Contact{}) {
		t.Fatalf("u1/b2 = %+v, %v; want nothing", got, ok)
	}
	var yielded []policy.Contact
	if _, _, err := policy.AudienceOf(p, "b1", "", 10, func(u string, c *policy.Contact, known bool) error {
		if known {
			t.Errorf("the audience yields %s's contact from before the erasure as known", u)
		}
		yielded = append(yielded, *c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(yielded) != 1 || !reflect.DeepEqual(yielded[0], want) {
		t.Fatalf("audience of b1 = %+v, want [%+v]", yielded, want)
	}
	must(t, b.Commit(3))

	b = s.NewBatch(0)
	p = erasing(t, b)
	if _, err := policy.SweepContacts(p, nil, 10, func(*policy.Contact) bool { return false }); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, ch := range b.Changes() {
		if ch.Value == nil {
			deleted = append(deleted, string(ch.Key))
		}
	}
	if !slices.Equal(deleted, []string{string(state.ContactChangelogKey("u1", "b2"))}) {
		t.Fatalf("sweep deleted %q, want u1/b2 only", deleted)
	}
	must(t, b.Commit(4))
	b = s.NewBatch(0)
	defer b.Close()
	p = erasing(t, b)
	if got, ok := contactOf(t, p, "u1", "b1"); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("after the sweep, u1/b1 = %+v, %v; want %+v, known", got, ok, want)
	}
}
