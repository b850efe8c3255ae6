package state

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sponsored/sponsor/policy"
)

// TestContactFilterGrows: a filter sized for few keys takes many more
// (new layers) and never loses one; it still rules out most absent keys.
func TestContactFilterGrows(t *testing.T) {
	f := NewContactFilter(0)
	const n = 300_000 // past 64k + 128k: three layers
	for i := range n {
		f.Add(contactKey(nil, fmt.Sprintf("user-%d", i), "biz"))
	}
	if len(f.contacts.layers) < 3 {
		t.Fatalf("%d layers after %d keys, want at least 3", len(f.contacts.layers), n)
	}
	for i := range n {
		if !f.MayContain(contactKey(nil, fmt.Sprintf("user-%d", i), "biz")) {
			t.Fatalf("key %d added, MayContain false", i)
		}
	}
	var fp int
	for i := range 100_000 {
		if f.MayContain(contactKey(nil, fmt.Sprintf("user-%d", i), "other-biz")) {
			fp++
		}
	}
	if fp > 4_000 { // 1% per layer
		t.Fatalf("%d of 100000 absent keys not ruled out", fp)
	}
	if f.Keys() != n || f.Bytes() == 0 || f.Bytes() > 2<<20 {
		t.Fatalf("keys %d, bytes %d", f.Keys(), f.Bytes())
	}
	// Erasure markers have a stack of their own, empty until the first.
	if len(f.erasures.layers) != 0 || f.MayContain(erasureKey(nil, "user-1")) {
		t.Fatal("the erasure markers' filter is not empty before the first")
	}
	f.Add(erasureKey(nil, "user-1"))
	if !f.MayContain(erasureKey(nil, "user-1")) || len(f.erasures.layers) != 1 || f.Keys() != n {
		t.Fatalf("after one erasure marker: found %v, %d erasure layers, %d contact keys",
			f.MayContain(erasureKey(nil, "user-1")), len(f.erasures.layers), f.Keys())
	}
}

// TestBatchWithContactFilter: reads through a batch using the filter answer
// as reads without it, for committed, in-batch, aborted, deleted and
// re-created contacts, and for a filter rebuilt from the store; and the
// filter does rule absent pairs out.
func TestBatchWithContactFilter(t *testing.T) {
	s := open(t)
	const p = 3
	f, err := s.ContactFilter(p)
	if err != nil {
		t.Fatal(err)
	}
	c := func(at int64) *policy.Contact { return &policy.Contact{Last: [3]int64{at, 0, 0}} }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	b := s.NewBatch(p)
	b.UseFilter(f)
	for i := range 1000 {
		must(b.PutContact(fmt.Sprintf("u%d", i), "biz", c(int64(i+1)), false))
	}
	must(b.Commit(1))

	b = s.NewBatch(p)
	b.UseFilter(f)
	must(b.PutContact("aborted", "biz", c(5), false))
	b.Close()

	b = s.NewBatch(p)
	b.UseFilter(f)
	must(b.DeleteContact("u7", "biz"))
	must(b.PutContact("in-batch", "biz", c(9), false))
	// A known contact's update keeps its index entry.
	got, known, err := b.Contact("u8", "biz")
	must(err)
	if !known || got.Last[0] != 9 {
		t.Fatalf("u8: %+v %v", got, known)
	}
	got.Last[1] = 100
	must(b.PutContact("u8", "biz", &got, true))
	must(b.DeleteContact("u9", "biz"))
	must(b.PutContact("u9", "biz", c(99), false)) // re-created: indexed again
	check := func(name string, b *Batch, want map[string]int64) {
		t.Helper()
		for _, u := range []string{"u0", "u7", "u8", "u9", "u999", "in-batch", "aborted", "never", "u1000"} {
			got, ok, err := b.Contact(u, "biz")
			must(err)
			w, wok := want[u]
			if ok != wok || ok && got.Last[0] != w {
				t.Errorf("%s: contact %s = %+v, %v; want %d, %v", name, u, got, ok, w, wok)
			}
		}
		var users []string
		_, _, err := b.Audience("biz", "", 10_000, func(u string, _ *policy.Contact) error { users = append(users, u); return nil })
		must(err)
		if len(users) != 1000 || slices.Contains(users, "u7") || !slices.Contains(users, "u8") || !slices.Contains(users, "u9") || !slices.Contains(users, "in-batch") {
			t.Errorf("%s: audience of %d users (u7 %v, u8 %v, u9 %v)", name, len(users), slices.Contains(users, "u7"), slices.Contains(users, "u8"), slices.Contains(users, "u9"))
		}
	}
	want := map[string]int64{"u0": 1, "u8": 9, "u9": 99, "u999": 1000, "in-batch": 9}
	check("in the batch", b, want)
	must(b.Commit(2))

	for name, filter := range map[string]*ContactFilter{"the same filter": f, "none": nil, "rebuilt": nil} {
		if name == "rebuilt" {
			filter, err = s.ContactFilter(p)
			must(err)
		}
		b := s.NewBatch(p)
		if filter != nil {
			b.UseFilter(filter)
		}
		check("committed, "+name, b, want)
		b.Close()
	}

	// The filter answers for absent pairs without Pebble: most are ruled out.
	var ruledOut int
	for i := range 10_000 {
		if !f.MayContain(contactKey(nil, fmt.Sprintf("u%d", i), "other")) {
			ruledOut++
		}
	}
	if ruledOut < 9_800 {
		t.Fatalf("the filter ruled out %d of 10000 absent pairs", ruledOut)
	}
}

// TestRestoredStateWithFilter: a store restored from the changelog, with a
// filter built from it, answers as the source did, and a known contact's
// update (which writes no index entry) keeps the user in the audience: the
// restorer derived the index entry from the contact.
func TestRestoredStateWithFilter(t *testing.T) {
	src, dst := open(t), open(t)
	const p = 2
	b := src.NewBatch(p)
	for _, u := range []string{"u1", "u2", "u3"} {
		if err := b.PutContact(u, "biz", &policy.Contact{Last: [3]int64{10, 0, 0}}, false); err != nil {
			t.Fatal(err)
		}
	}
	changes := b.Changes()
	if err := b.Commit(int64(len(changes))); err != nil {
		t.Fatal(err)
	}
	restoreChanges(t, dst, p, changes)

	f, err := dst.ContactFilter(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Keys() != 3 {
		t.Fatalf("filter built from %d keys, want 3", f.Keys())
	}
	b = dst.NewBatch(p)
	b.UseFilter(f)
	c, known, err := b.Contact("u2", "biz")
	if err != nil || !known || c.Last[0] != 10 {
		t.Fatalf("restored u2: %+v %v %v", c, known, err)
	}
	c.Last[1] = 20
	if err := b.PutContact("u2", "biz", &c, known); err != nil {
		t.Fatal(err)
	}
	if _, known, _ := b.Contact("u4", "biz"); known {
		t.Fatal("u4 was never a contact")
	}
	if err := b.Commit(int64(len(changes)) + 1); err != nil {
		t.Fatal(err)
	}
	rb := dst.NewBatch(p)
	defer rb.Close()
	var users []string
	if _, _, err := rb.Audience("biz", "", 10, func(u string, _ *policy.Contact) error { users = append(users, u); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(users, []string{"u1", "u2", "u3"}) {
		t.Fatalf("audience after the update = %v, want [u1 u2 u3]", users)
	}
	if c, _, _ := rb.Contact("u2", "biz"); c.Last[1] != 20 {
		t.Fatalf("u2 after the update: %+v", c)
	}
}

// TestContactFilterAddChangelog: a standby's filter takes the contact and
// erasure keys of the changelog it applies, and no other.
func TestContactFilterAddChangelog(t *testing.T) {
	f := NewContactFilter(0)
	f.AddChangelog(contactKey(nil, "user-1", "biz"))
	f.AddChangelog(erasureKey(nil, "user-2"))
	f.AddChangelog(recipientKey(nil, "user-3"))
	f.AddChangelog(metaKey(nil))
	f.AddChangelog(nil)
	if !f.MayContain(contactKey(nil, "user-1", "biz")) || !f.MayContain(erasureKey(nil, "user-2")) {
		t.Fatal("a contact or erasure key applied is not in the filter")
	}
	if f.Keys() != 1 || f.erasures.keys != 1 {
		t.Fatalf("contacts %d, erasures %d; want 1 and 1 (other keys ignored)", f.Keys(), f.erasures.keys)
	}
}
