package state

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sponsored/sponsor/pipeline/policy"
)

// Change is one changelog record: a key without its partition prefix and
// the new value, nil for a deletion.
type Change struct {
	Key, Value []byte
}

// Batch stages the changes of one task (partition) for one transaction.
// Reads through the Batch see its own writes, except the expiry sweeps,
// which read the committed state and pass over what the batch changed
// (sweep). Nothing reaches Pebble until Commit; Close discards everything
// (after an aborted transaction).
// A Batch is used by one goroutine.
type Batch struct {
	s       *Store
	p       int32
	b       *pebble.Batch // not indexed until an iterator needs it (view)
	changes []Change
	index   map[string]int   // changelog key -> position in changes
	kbuf    []byte           // the Pebble key of the last read or write
	rbuf    []byte           // the changelog key of the last read
	it      *pebble.Iterator // the DB's reads (get), from the first one to Close
	filter  *ContactFilter   // the partition's contact keys, if known (UseFilter)
}

// UseFilter makes the batch answer a contact read the filter rules out
// without reading Pebble, and add the contact keys it writes to the filter.
// f must hold every contact key of the partition in the store.
func (b *Batch) UseFilter(f *ContactFilter) { b.filter = f }

// NewBatch starts a batch for partition p.
func (s *Store) NewBatch(p int32) *Batch {
	return &Batch{s: s, p: p, b: s.db.NewBatch(), index: make(map[string]int)}
}

// view returns the batch as an indexed batch, whose iterators see its own
// writes over the DB's. A batch starts unindexed: indexing costs a skiplist
// insertion per write (measured: about a third of PutContact), and the
// point reads (get) answer from the recorded changes without it; only the
// fan-out's index scan and an erasure iterate, and the first of them in a
// transaction indexes what the batch holds so far (Pebble's Apply).
func (b *Batch) view() (*pebble.Batch, error) {
	if !b.b.Indexed() {
		ib := b.s.db.NewIndexedBatch()
		if err := ib.Apply(b.b, nil); err != nil {
			ib.Close()
			return nil, fmt.Errorf("index the state batch of partition %d: %w", b.p, err)
		}
		b.b.Close()
		b.b = ib
	}
	return b.b, nil
}

// Changes returns the changelog records of the batch, one per key, in the
// order each key was first written.
func (b *Batch) Changes() []Change { return b.changes }

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool { return len(b.changes) == 0 }

// Commit applies the batch to Pebble with checkpoint as the partition's next
// changelog offset, and closes the batch.
func (b *Batch) Commit(checkpoint int64) error {
	if err := b.b.Set(append(appendPartition(nil, b.p), kindCheckpoint), checkpointValue(checkpoint), nil); err != nil {
		return err
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("apply state of partition %d: %w", b.p, err)
	}
	b.Close()
	return nil
}

// Close discards what was not committed. It is safe to call twice.
func (b *Batch) Close() {
	if b.it != nil {
		b.it.Close()
		b.it = nil
	}
	if b.b != nil {
		b.b.Close()
		b.b = nil
	}
}

// full returns the Pebble key of changelog key k (in a reused buffer).
func (b *Batch) full(k []byte) []byte {
	b.kbuf = append(appendPartition(b.kbuf[:0], b.p), k...)
	return b.kbuf
}

func (b *Batch) record(k, v []byte) {
	if i, ok := b.index[string(k)]; ok {
		b.changes[i].Value = v
		return
	}
	b.index[string(k)] = len(b.changes)
	b.changes = append(b.changes, Change{Key: k, Value: v})
}

func (b *Batch) set(k, v []byte) error {
	if err := b.b.Set(b.full(k), v, nil); err != nil {
		return err
	}
	b.record(k, v)
	return nil
}

func (b *Batch) del(k []byte) error {
	if err := b.b.Delete(b.full(k), nil); err != nil {
		return err
	}
	b.record(k, nil)
	return nil
}

// get returns a copy of the value of changelog key k, nil if absent.
//
// Every write of a changelog key goes through set or del, which record it,
// so the batch's own latest value of a key is in b.changes: get answers from
// there, and otherwise from the DB directly. Asking the indexed batch
// instead costs an internal iterator (an allocation and a merge of the batch
// with the DB) per read, the largest allocation of the steady state (see
// docs/performance.md). The batch's index keys ('i'), which are not
// recorded, are only read through the batch's iterators.
//
// The DB is read through one iterator per batch, positioned with
// SeekPrefixGE (the whole key is the prefix, so the bloom filters apply),
// rather than a Get per read, which builds and tears down an iterator
// stack each time: measured 10% more interactions/s in the steady state and
// 25% more deliveries/s in a fan-out, whose reads come in key order
// (docs/performance.md). The iterator sees the DB as of the batch's first
// read: the task's earlier batches are all committed by then, and nothing
// else writes its partition.
func (b *Batch) get(k []byte) ([]byte, error) {
	if i, ok := b.index[string(k)]; ok {
		if v := b.changes[i].Value; v != nil {
			return append([]byte(nil), v...), nil
		}
		return nil, nil
	}
	if b.it == nil {
		it, err := b.s.db.NewIter(nil)
		if err != nil {
			return nil, fmt.Errorf("read state of partition %d: %w", b.p, err)
		}
		b.it = it
	}
	key := b.full(k)
	if b.it.SeekPrefixGE(key) && bytes.Equal(b.it.Key(), key) {
		v, err := b.it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read state of partition %d: %w", b.p, err)
		}
		return append([]byte(nil), v...), nil
	}
	if err := b.it.Error(); err != nil {
		return nil, fmt.Errorf("read state of partition %d: %w", b.p, err)
	}
	return nil, nil
}

// Contact returns the contact between user and business; ok is false if the
// task knows none.
func (b *Batch) Contact(user, business string) (c policy.Contact, ok bool, err error) {
	b.rbuf = contactKey(b.rbuf[:0], user, business)
	if b.filter != nil && !b.filter.MayContain(b.rbuf) {
		return c, false, nil // every key written, committed or in the batch, is in the filter
	}
	v, err := b.get(b.rbuf)
	if err != nil || v == nil {
		return c, false, err
	}
	c, err = DecodeContact(v)
	if err != nil {
		return c, false, fmt.Errorf("contact %q/%q: %w", user, business, err)
	}
	return c, true, nil
}

// PutContact stores the contact between user and business and indexes the
// user under the business for fan-out. known says the contact exists
// already (Contact returned ok), so its index entry does too and is not
// written again: a fan-out updates every recipient's contact.
func (b *Batch) PutContact(user, business string, c *policy.Contact, known bool) error {
	k := contactKey(nil, user, business)
	if err := b.set(k, AppendContact(nil, c)); err != nil {
		return err
	}
	if known {
		return nil
	}
	if b.filter != nil {
		b.filter.Add(k)
	}
	return b.b.Set(indexKey(appendPartition(nil, b.p), business, user), nil, nil)
}

// DeleteContact forgets the contact between user and business.
func (b *Batch) DeleteContact(user, business string) error {
	if err := b.del(contactKey(nil, user, business)); err != nil {
		return err
	}
	return b.b.Delete(indexKey(appendPartition(nil, b.p), business, user), nil)
}

// Recipient returns the user's recent deliveries across businesses.
func (b *Batch) Recipient(user string) (r policy.Recipient, ok bool, err error) {
	v, err := b.get(recipientKey(nil, user))
	if err != nil || v == nil {
		return r, false, err
	}
	r, err = DecodeRecipient(v)
	if err != nil {
		return r, false, fmt.Errorf("recipient %q: %w", user, err)
	}
	return r, true, nil
}

// PutRecipient stores the user's recent deliveries.
func (b *Batch) PutRecipient(user string, r *policy.Recipient) error {
	return b.set(recipientKey(nil, user), AppendRecipient(nil, r))
}

// DeleteRecipient forgets the user's recent deliveries.
func (b *Batch) DeleteRecipient(user string) error {
	return b.del(recipientKey(nil, user))
}

// EraseUser deletes everything the task knows about user: every contact, its
// index entries and the recipient record. It returns how many contacts it
// deleted.
func (b *Batch) EraseUser(user string) (int, error) {
	prefix := b.full(userContactsPrefix(nil, user))
	lower := append([]byte(nil), prefix...)
	v, err := b.view()
	if err != nil {
		return 0, err
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return 0, err
	}
	var businesses []string
	for it.First(); it.Valid(); it.Next() {
		businesses = append(businesses, string(it.Key()[len(lower):]))
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	for _, biz := range businesses {
		if err := b.DeleteContact(user, biz); err != nil {
			return 0, err
		}
	}
	if v, err := b.get(recipientKey(nil, user)); err != nil {
		return 0, err
	} else if v != nil {
		if err := b.DeleteRecipient(user); err != nil {
			return 0, err
		}
	}
	return len(businesses), nil
}

// Audience calls fn for up to limit users indexed under business whose id
// sorts after the cursor after (all users when after is empty), in ascending
// order. It returns the last user visited and whether the index is exhausted.
func (b *Batch) Audience(business, after string, limit int, fn func(user string) error) (last string, done bool, err error) {
	prefix := businessIndexPrefix(appendPartition(nil, b.p), business)
	lower := append(append([]byte(nil), prefix...), after...)
	if after != "" {
		lower = append(lower, 0) // the smallest key after the cursor
	}
	v, err := b.view()
	if err != nil {
		return after, false, err
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return after, false, err
	}
	users := make([]string, 0, min(limit, 1024))
	for it.First(); it.Valid() && len(users) < limit; it.Next() {
		users = append(users, string(it.Key()[len(prefix):]))
	}
	exhausted := !it.Valid()
	if err := it.Close(); err != nil {
		return after, false, err
	}
	// Iterate outside the iterator: fn writes to the batch.
	last = after
	for _, u := range users {
		if err := fn(u); err != nil {
			return last, false, err
		}
		last = u
	}
	return last, exhausted, nil
}

// SweepContacts visits up to limit contacts of the partition after the
// changelog key cursor after (from the start when nil) and deletes those for
// which expired returns true. It returns the cursor to continue from, nil
// when the sweep reached the end.
func (b *Batch) SweepContacts(after []byte, limit int, expired func(c *policy.Contact) bool) (next []byte, deleted int, err error) {
	next, victims, err := b.sweep(kindContact, after, limit, func(v []byte) (bool, error) {
		c, err := DecodeContact(v)
		return err == nil && expired(&c), err
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range victims {
		user, business, err := splitLenString(k[1:])
		if err != nil {
			return nil, 0, err
		}
		if err := b.DeleteContact(string(user), string(business)); err != nil {
			return nil, 0, err
		}
	}
	return next, len(victims), nil
}

// SweepRecipients is SweepContacts for the per-user delivery lists.
func (b *Batch) SweepRecipients(after []byte, limit int, expired func(r *policy.Recipient) bool) (next []byte, deleted int, err error) {
	next, victims, err := b.sweep(kindRecipient, after, limit, func(v []byte) (bool, error) {
		r, err := DecodeRecipient(v)
		return err == nil && expired(&r), err
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range victims {
		if err := b.DeleteRecipient(string(k[1:])); err != nil {
			return nil, 0, err
		}
	}
	return next, len(victims), nil
}

// sweep visits up to limit keys of one kind after the changelog key cursor
// after and returns the changelog keys for which expired is true, and the
// cursor to continue from (nil at the end). The caller deletes outside the
// iterator.
//
// It reads the committed state (the DB), not the batch, so that a sweep,
// which runs in every transaction, does not make the batch index its
// writes (view): a key the batch changed is passed over, since it was just
// written (an interaction or a delivery: not expired as of now) or deleted.
// A sweep only forgets what no rule can use any more (decisions do not
// depend on when it runs), so passing over a key at most delays that to
// the next round.
func (b *Batch) sweep(kind byte, after []byte, limit int, expired func(v []byte) (bool, error)) (next []byte, victims [][]byte, err error) {
	prefix := append(appendPartition(nil, b.p), kind)
	lower := prefix
	if after != nil {
		lower = append(append(appendPartition(nil, b.p), after...), 0)
	}
	it, err := b.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, nil, err
	}
	for n := 0; n < limit && (n == 0 && it.First() || n > 0 && it.Next()); n++ {
		k := it.Key()[prefixLen:]
		next = append(next[:0], k...)
		if _, changed := b.index[string(k)]; changed {
			continue
		}
		dead, err := expired(it.Value())
		if err != nil {
			it.Close()
			return nil, nil, fmt.Errorf("sweep %q keys of partition %d: %w", kind, b.p, err)
		}
		if dead {
			victims = append(victims, append([]byte(nil), k...))
		}
	}
	if it.Valid() && !it.Next() {
		next = nil // the last key visited was the last one
	} else if !it.Valid() {
		next = nil
	}
	if err := it.Close(); err != nil {
		return nil, nil, err
	}
	return next, victims, nil
}

// PutCampaign stores the task's record of a campaign.
func (b *Batch) PutCampaign(p *policy.Progress) error {
	return b.set(campaignKey(nil, p.Campaign.ID), AppendProgress(nil, p))
}

// DeleteCampaign forgets the task's record of a campaign.
func (b *Batch) DeleteCampaign(id string) error {
	return b.del(campaignKey(nil, id))
}

// PutMeta stores the task's metadata.
func (b *Batch) PutMeta(m *Meta) error {
	return b.set(metaKey(nil), AppendMeta(nil, m))
}
