package state

import (
	"fmt"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"
)

// ContactFilter is an in-memory bloom filter of the contact keys of one
// partition: it answers "no contact" for most pairs the partition does not
// hold without reading Pebble. In the steady state most interactions are a
// first contact, and a Pebble read of an absent key still seeks every
// memtable and probes a table filter per level; the profile put those reads
// at a third of the pipeline's own CPU (docs/performance.md, fifth round).
//
// It holds every contact key of the partition and possibly more: keys are
// added when a batch writes them (before its transaction commits: an abort
// leaves extra keys, which only cost a read) and never removed (a deleted
// contact is a false positive, answered by Pebble). So it never says "no"
// for a pair Pebble holds, which is all its users rely on.
//
// A bloom filter cannot grow, so this one is a stack of them: when the
// newest has taken the keys it was sized for, a new one twice as large
// takes the next (a scalable bloom filter). A lookup tests each.
//
// Pebble's own table filters cannot take this role: they are per table,
// consulted after the memtables, and the batch's keys are in none of them.
// The library is bits-and-blooms/bloom, the common Go bloom filter.
//
// Erasure markers (Erasure) go to a second stack of their own: they are
// few, and a check for one (every new contact, every contact the sweep
// visits) then costs nothing while the partition has none, and a probe of
// a small filter after.
type ContactFilter struct {
	contacts, erasures layers
}

// layers is a scalable bloom filter: a stack of filters, each twice the
// size of the one before.
type layers struct {
	min    uint // the first layer's capacity
	layers []*bloom.BloomFilter
	room   uint // keys the newest layer may still take
	last   uint // capacity of the newest layer
	keys   uint // keys added
}

// filterFP is each layer's false-positive rate at its capacity: 1%, about
// 1.2 bytes per key.
const filterFP = 0.01

// minFilterCapacity is the smallest layer: 64k keys, 77 KiB;
// minErasureCapacity the smallest of the erasure markers', 4k keys, 5 KiB.
const (
	minFilterCapacity  = 1 << 16
	minErasureCapacity = 1 << 12
)

// NewContactFilter returns an empty filter whose first layer is sized for
// about n contact keys.
func NewContactFilter(n uint) *ContactFilter {
	return &ContactFilter{
		contacts: layers{min: max(n, minFilterCapacity)},
		erasures: layers{min: minErasureCapacity},
	}
}

func (l *layers) add(k []byte) {
	if l.room == 0 {
		capacity := l.min
		if len(l.layers) > 0 {
			capacity = 2 * l.last
		}
		l.layers = append(l.layers, bloom.NewWithEstimates(capacity, filterFP))
		l.room, l.last = capacity, capacity
	}
	l.layers[len(l.layers)-1].Add(k)
	l.room--
	l.keys++
}

func (l *layers) mayContain(k []byte) bool {
	for i := len(l.layers) - 1; i >= 0; i-- {
		if l.layers[i].Test(k) {
			return true
		}
	}
	return false
}

func (l *layers) bytes() uint {
	var n uint
	for _, b := range l.layers {
		n += (b.Cap() + 7) / 8
	}
	return n
}

// of returns the stack that holds key k.
func (f *ContactFilter) of(k []byte) *layers {
	if len(k) > 0 && k[0] == kindErasure {
		return &f.erasures
	}
	return &f.contacts
}

// AddChangelog records changelog key k if it is a contact's or an erasure
// marker's, and ignores any other key: a standby that applies a
// partition's changelog keeps the partition's filter with it (a superset
// of the keys the store holds, as a filter may be).
func (f *ContactFilter) AddChangelog(k []byte) {
	if len(k) > 0 && (k[0] == kindContact || k[0] == kindErasure) {
		f.Add(k)
	}
}

// Add records the changelog key k of a contact or an erasure marker.
func (f *ContactFilter) Add(k []byte) { f.of(k).add(k) }

// MayContain reports whether the partition may hold changelog key k (a
// contact's or an erasure marker's); false means it certainly does not.
func (f *ContactFilter) MayContain(k []byte) bool { return f.of(k).mayContain(k) }

// Keys is how many contact keys were added (for the logs: after a build,
// the partition's contacts).
func (f *ContactFilter) Keys() uint { return f.contacts.keys }

// Bytes is the memory of the filter's bit sets.
func (f *ContactFilter) Bytes() uint { return f.contacts.bytes() + f.erasures.bytes() }

// ContactFilter builds the filter of partition p from every contact key and
// erasure marker the store holds for it, sized for twice as many: call it
// once the partition's state is restored, before any batch of the
// partition uses the filter.
func (s *Store) ContactFilter(p int32) (*ContactFilter, error) {
	if err := s.waitApplied(p); err != nil {
		return nil, err
	}
	contacts := append(appendPartition(nil, p), kindBusinessContact)
	erasures := append(appendPartition(nil, p), kindErasure)
	// Two passes, counting and then adding, rather than holding every key
	// in memory between them.
	var n uint
	count := func([]byte) error { n++; return nil }
	if err := s.eachKey(contacts, count); err != nil {
		return nil, fmt.Errorf("contact filter of partition %d: %w", p, err)
	}
	if err := s.eachKey(erasures, count); err != nil {
		return nil, fmt.Errorf("contact filter of partition %d: %w", p, err)
	}
	f := NewContactFilter(2 * n)
	var ck []byte
	err := s.eachKey(contacts, func(k []byte) error {
		// The filter holds changelog keys, which put the user first.
		var err error
		if ck, err = appendChangelogKey(ck[:0], k); err == nil {
			f.Add(ck)
		}
		return err
	})
	if err == nil {
		err = s.eachKey(erasures, func(k []byte) error { f.Add(k); return nil })
	}
	if err != nil {
		return nil, fmt.Errorf("contact filter of partition %d: %w", p, err)
	}
	return f, nil
}

// eachKey calls fn with every key (without its partition prefix) that
// starts with prefix, keys only.
func (s *Store) eachKey(prefix []byte, fn func(k []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key()[prefixLen:]); err != nil {
			return err
		}
	}
	return it.Error()
}
