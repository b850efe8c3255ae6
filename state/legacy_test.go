package state

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sponsored/sponsor/policy"
)

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
