package state

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sponsored/sponsor/policy"
)

// Change is one changelog record: a key without its partition prefix and
// the new value, nil for a deletion.
type Change struct {
	Key, Value []byte
}

// Batch stages the changes of one task (partition) for one transaction.
// Reads through the Batch see its own writes, except the expiry sweeps,
// which read the committed state and pass over what the batch changed
// (sweep). Nothing reaches Pebble until Commit or Apply; Close discards
// everything (after an aborted transaction).
// A Batch is used by one goroutine at a time, except that the batch that
// follows it (Follow) reads its recorded changes while Apply's goroutine
// writes it to Pebble.
type Batch struct {
	s       *Store
	p       int32
	b       *pebble.Batch // not indexed until an iterator needs it (view)
	changes []Change
	index   map[string]int   // changelog key -> position in changes
	slab    []byte           // holds the keys and values of changes (keep)
	kbuf    []byte           // the Pebble key of the last read or write
	wbuf    []byte           // the changelog key of the last contact written
	vbuf    []byte           // the value of the last contact written
	rbuf    []byte           // the changelog key of the last contact read
	ebuf    []byte           // the changelog key of the last erasure read
	it      *pebble.Iterator // the DB's reads (get), from the first one to Close
	filter  *ContactFilter   // the partition's contact keys, if known (UseFilter)
	// contacts reports that the batch wrote or deleted a contact: only
	// then must a scan of contacts (Audience) see the batch's writes.
	contacts bool

	prev     *Batch        // the batch b follows until it is applied (Follow)
	applied  chan struct{} // closed once Apply's work is done
	applyErr error         // Apply's failure, set before applied is closed
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
// fan-out's scan of a business's contacts iterates, and the first one in a
// transaction indexes what the batch holds so far (Pebble's Apply).
func (b *Batch) view() (*pebble.Batch, error) {
	if err := b.settle(); err != nil {
		return nil, err
	}
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
// changelog offset, and closes the batch. It first waits for the batch b
// follows (Follow), if any.
func (b *Batch) Commit(checkpoint int64) error {
	if err := b.settle(); err != nil {
		b.Close()
		return err
	}
	return b.commit(checkpoint)
}

func (b *Batch) commit(checkpoint int64) error {
	defer b.Close()
	if err := b.b.Set(append(appendPartition(nil, b.p), kindCheckpoint), checkpointValue(checkpoint), nil); err != nil {
		return fmt.Errorf("apply state of partition %d: %w", b.p, err)
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("apply state of partition %d: %w", b.p, err)
	}
	return nil
}

// ErrApply marks the failure of a batch's apply to Pebble after its
// transaction committed: the store no longer reflects the changelog, and
// only a restore can make it so again.
var ErrApply = errors.New("state: a committed batch could not be applied")

// Apply is Commit on a goroutine of its own, so that the task's next
// transaction can run meanwhile: it waits for the batch b follows, if any,
// and returns while Pebble applies b. The next batch of the partition
// follows b (Follow) to read b's changes until they are in Pebble; the
// store's own reads of the partition (Checkpoint, LoadTask, ContactFilter,
// NewRestorer, DropPartition) and Close wait for the apply. The error is
// that of the batch b followed (wrapping ErrApply); b's own is reported by
// Wait, by the next batch's Apply or Commit, and by the store's reads.
func (b *Batch) Apply(checkpoint int64) error {
	if err := b.settle(); err != nil {
		b.Close()
		return err
	}
	done := make(chan struct{})
	b.applied = done
	b.s.startApply(b)
	go func() {
		if err := b.commit(checkpoint); err != nil {
			b.applyErr = fmt.Errorf("%w: %w", ErrApply, err)
		}
		// The store learns of a failure before any waiter wakes.
		b.s.endApply(b)
		close(done)
	}()
	return nil
}

// Wait waits until the apply Apply started is done, and returns its error.
// It returns nil at once for a batch that Apply did not start.
func (b *Batch) Wait() error {
	if b.applied == nil {
		return nil
	}
	<-b.applied
	return b.applyErr
}

// Follow makes b, a new batch of the same partition, read through prev, a
// batch whose transaction committed and whose apply (Apply) may still be
// running: until prev is in Pebble, b's point reads see prev's changes
// over the DB's. What reads the DB directly (the fan-out's iterator, the
// expiry sweep) and b's own Commit or Apply first wait for prev, so the
// partition's batches reach Pebble in order.
func (b *Batch) Follow(prev *Batch) { b.prev = prev }

// settle waits for the batch b follows to be applied; from then on b reads
// the DB alone.
func (b *Batch) settle() error {
	if b.prev == nil {
		return nil
	}
	err := b.prev.Wait()
	b.prev = nil
	if b.it != nil {
		// Opened before prev's apply, it does not see prev's changes.
		b.it.Close()
		b.it = nil
	}
	return err
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
func (b *Batch) full(k []byte) ([]byte, error) {
	var err error
	b.kbuf, err = appendPebbleKey(b.kbuf[:0], b.p, k)
	return b.kbuf, err
}

// record records the change of changelog key k to v (nil: deleted), with
// copies of both in the batch's slab, so that callers may pass buffers they
// reuse.
func (b *Batch) record(k, v []byte) {
	if len(k) > 0 && k[0] == kindContact {
		b.contacts = true
	}
	if i, ok := b.index[string(k)]; ok {
		b.changes[i].Value = b.keep(v)
		return
	}
	k = b.keep(k)
	// The index's key is the slab's copy: slab bytes never change (keep).
	b.index[unsafe.String(unsafe.SliceData(k), len(k))] = len(b.changes)
	b.changes = append(b.changes, Change{Key: k, Value: b.keep(v)})
}

// slabSize is the size of one slab of a batch's changes: one allocation for
// some hundreds of them instead of three per change (a key, a value and the
// index's copy of the key), which a fan-out makes per delivery.
const slabSize = 64 << 10

// keep returns a copy of p carved from the batch's slab; nil stays nil (a
// deletion) and an empty p gives an empty, non-nil slice. A slab is never
// written again where it was handed out, and never reused: the changes
// point into it until their records are produced and the batch is applied
// and dropped, and a full slab is left to the garbage collector with them.
func (b *Batch) keep(p []byte) []byte {
	if p == nil {
		return nil
	}
	if b.slab == nil || cap(b.slab)-len(b.slab) < len(p) {
		b.slab = make([]byte, 0, max(slabSize, len(p)))
	}
	n := len(b.slab)
	b.slab = append(b.slab, p...)
	return b.slab[n:len(b.slab):len(b.slab)]
}

func (b *Batch) set(k, v []byte) error {
	pk, err := b.full(k)
	if err != nil {
		return err
	}
	if err := b.b.Set(pk, v, nil); err != nil {
		return err
	}
	b.record(k, v)
	return nil
}

func (b *Batch) del(k []byte) error {
	pk, err := b.full(k)
	if err != nil {
		return err
	}
	if err := b.b.Delete(pk, nil); err != nil {
		return err
	}
	b.record(k, nil)
	return nil
}

// get returns a copy of the value of changelog key k, nil if absent.
//
// Every write of a changelog key goes through set or del, which record it,
// so the batch's own latest value of a key is in b.changes: get answers from
// there, then from the changes of the batch it follows while that one is
// not yet in Pebble (Follow), and otherwise from the DB directly. Asking
// the indexed batch instead costs an internal iterator (an allocation and a
// merge of the batch with the DB) per read, the largest allocation of the
// steady state (see docs/performance.md).
//
// The DB is read through one iterator per batch, positioned with
// SeekPrefixGE (the whole key is the prefix, so the bloom filters apply),
// rather than a Get per read, which builds and tears down an iterator
// stack each time: measured 10% more interactions/s in the steady state and
// 25% more deliveries/s in a fan-out, whose reads come in key order
// (docs/performance.md). The iterator sees the DB as of the batch's first
// read: the task's earlier batches are applied by then, but for the one it
// follows, whose changes it reads first (settle drops the iterator once
// that one is applied), and nothing else writes its partition.
func (b *Batch) get(k []byte) ([]byte, error) {
	if v, ok := b.change(k); ok {
		return v, nil
	}
	if b.prev != nil {
		if v, ok := b.prev.change(k); ok {
			return v, nil
		}
	}
	if b.it == nil {
		it, err := b.s.db.NewIter(nil)
		if err != nil {
			return nil, fmt.Errorf("read state of partition %d: %w", b.p, err)
		}
		b.it = it
	}
	key, err := b.full(k)
	if err != nil {
		return nil, err
	}
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

// change returns a copy of the batch's latest value of changelog key k (nil
// for a deletion), and whether the batch wrote k.
func (b *Batch) change(k []byte) ([]byte, bool) {
	i, ok := b.index[string(k)]
	if !ok {
		return nil, false
	}
	if v := b.changes[i].Value; v != nil {
		return append([]byte(nil), v...), true
	}
	return nil, true
}

// Contact returns the stored contact between user and business. It does
// not judge it: a contact from before the user's erasure is returned as
// any other (policy.Erasure.Covers decides).
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

// Erasure returns the user's erasure marker, if the store keeps one.
func (b *Batch) Erasure(user string) (e policy.Erasure, ok bool, err error) {
	b.ebuf = erasureKey(b.ebuf[:0], user)
	if b.filter != nil && !b.filter.MayContain(b.ebuf) {
		return e, false, nil // never erased: the common case, without a read
	}
	v, err := b.get(b.ebuf)
	if err != nil || v == nil {
		return e, false, err
	}
	e, err = DecodeErasure(v)
	if err != nil {
		return e, false, fmt.Errorf("erasure of %q: %w", user, err)
	}
	return e, true, nil
}

// PutErasure stores the user's erasure marker.
func (b *Batch) PutErasure(user string, e *policy.Erasure) error {
	k := erasureKey(nil, user)
	if err := b.set(k, AppendErasure(nil, e)); err != nil {
		return err
	}
	if b.filter != nil {
		b.filter.Add(k)
	}
	return nil
}

// PutContact stores the contact between user and business. known says
// the store holds the contact already (Contact returned it), so that the
// filter knows its key.
func (b *Batch) PutContact(user, business string, c *policy.Contact, known bool) error {
	k := contactKey(b.wbuf[:0], user, business)
	b.wbuf = k
	b.vbuf = AppendContact(b.vbuf[:0], c)
	if err := b.set(k, b.vbuf); err != nil {
		return err
	}
	if !known && b.filter != nil {
		b.filter.Add(k)
	}
	return nil
}

// DeleteContact forgets the contact between user and business.
func (b *Batch) DeleteContact(user, business string) error {
	return b.del(contactKey(nil, user, business))
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

// CountContacts returns how many contacts business has on the batch's
// partition after user after ("": all), as the batch sees them: what a
// fan-out of its campaigns from that cursor goes over, for its progress.
// It reads every key of the business after the cursor.
func (b *Batch) CountContacts(business, after string) (int64, error) {
	prefix := businessContactsPrefix(appendPartition(nil, b.p), business)
	lower := append(append([]byte(nil), prefix...), after...)
	if after != "" {
		lower = append(lower, 0)
	}
	v, err := b.view()
	if err != nil {
		return 0, err
	}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, it.Close()
}

// Audience calls fn, in ascending order of user, with each user of the
// partition who has a stored contact with business and whose id sorts
// after the cursor after (all users when after is empty), for up to limit
// contacts. It returns the last user it went past (the cursor to continue
// from) and whether the business's contacts are exhausted. The contacts
// come with their values from one scan of the business's keys; fn is
// called after the scan, and may write to the batch.
func (b *Batch) Audience(business, after string, limit int, fn func(user string, c *policy.Contact) error) (last string, done bool, err error) {
	prefix := businessContactsPrefix(appendPartition(nil, b.p), business)
	lower := append(append([]byte(nil), prefix...), after...)
	if after != "" {
		lower = append(lower, 0) // the smallest key after the cursor
	}
	it, err := b.scan(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return after, false, err
	}
	type member struct {
		end int // of the user in users
		c   policy.Contact
	}
	members := make([]member, 0, min(limit, 1<<13)) // a chunk's worth at FanoutChunk's default: no regrowth
	buf := make([]byte, 0, 16*cap(members))         // the members' users, end to end: one string for all
	for it.First(); it.Valid() && len(members) < limit; it.Next() {
		user := it.Key()[len(prefix):]
		c, err := DecodeContact(it.Value())
		if err != nil {
			it.Close()
			return after, false, fmt.Errorf("contact %q/%q: %w", user, business, err)
		}
		buf = append(buf, user...)
		members = append(members, member{len(buf), c})
	}
	exhausted := !it.Valid()
	if err := it.Close(); err != nil {
		return after, false, err
	}
	users := string(buf)
	// Call fn outside the iterator: fn writes to the batch.
	last = after
	start := 0
	for i := range members {
		m := &members[i]
		user := users[start:m.end]
		start = m.end
		if err := fn(user, &m.c); err != nil {
			return last, false, err
		}
		last = user
	}
	return last, exhausted, nil
}

// scan returns an iterator over the contacts within opts' bounds as the
// batch sees them. A batch that changed no contact, as in most
// transactions of a fan-out (the scan comes first, the deliveries'
// writes after it), is read past: the iterator reads the DB, once the
// batch b follows is in it, and the batch stays unindexed, so that each
// of the chunk's writes after the scan costs no skiplist insertion
// (view). Otherwise the iterator reads the indexed batch over the DB.
func (b *Batch) scan(opts *pebble.IterOptions) (*pebble.Iterator, error) {
	if b.contacts {
		v, err := b.view()
		if err != nil {
			return nil, err
		}
		return v.NewIter(opts)
	}
	if err := b.settle(); err != nil {
		return nil, err
	}
	return b.s.db.NewIter(opts)
}

// SweepContacts visits up to limit contacts of the partition after the
// cursor after (from the start when nil) and deletes those for which fn
// returns true. It returns the cursor to continue from, nil when the sweep
// reached the end, and how many it deleted. fn reads the batch; it must
// not write it.
func (b *Batch) SweepContacts(after []byte, limit int, fn func(user, business string, c *policy.Contact) (bool, error)) (next []byte, deleted int, err error) {
	next, victims, err := b.sweep(kindBusinessContact, after, limit, func(k, v []byte) (bool, error) {
		c, err := DecodeContact(v)
		if err != nil {
			return false, err
		}
		business, user, err := splitBusinessContact(k)
		if err != nil {
			return false, err
		}
		return fn(string(user), string(business), &c)
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range victims {
		business, user, err := splitBusinessContact(k)
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
	next, victims, err := b.sweep(kindRecipient, after, limit, func(_, v []byte) (bool, error) {
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

// SweepErasures is SweepContacts for the erasure markers: fn sees each
// marker with its user.
func (b *Batch) SweepErasures(after []byte, limit int, fn func(user string, e *policy.Erasure) (bool, error)) (next []byte, deleted int, err error) {
	next, victims, err := b.sweep(kindErasure, after, limit, func(k, v []byte) (bool, error) {
		e, err := DecodeErasure(v)
		if err != nil {
			return false, err
		}
		return fn(string(k[1:]), &e)
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range victims {
		if err := b.del(k); err != nil {
			return nil, 0, err
		}
	}
	return next, len(victims), nil
}

// sweep visits up to limit Pebble keys of one kind after the cursor after
// (a Pebble key without its partition prefix) and returns those for which
// expired is true, and the cursor to continue from (nil at the end). The
// caller deletes outside the iterator.
//
// It reads the committed state (the DB), not the batch, so that a sweep,
// which runs in every transaction, does not make the batch index its
// writes (view): a key the batch changed is passed over, since it was just
// written (an interaction or a delivery: not expired as of now) or deleted.
// A sweep only forgets what no rule can use any more (decisions do not
// depend on when it runs), so passing over a key at most delays that to
// the next round.
func (b *Batch) sweep(kind byte, after []byte, limit int, expired func(k, v []byte) (bool, error)) (next []byte, victims [][]byte, err error) {
	if err := b.settle(); err != nil {
		return nil, nil, err
	}
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
		changed, err := b.changed(k)
		if err != nil || changed {
			if err != nil {
				it.Close()
				return nil, nil, err
			}
			continue
		}
		dead, err := expired(k, it.Value())
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

// changed reports whether the batch wrote the key whose Pebble key
// (without the partition prefix) is k.
func (b *Batch) changed(k []byte) (bool, error) {
	var err error
	if b.rbuf, err = appendChangelogKey(b.rbuf[:0], k); err != nil {
		return false, err
	}
	_, ok := b.index[string(b.rbuf)]
	return ok, nil
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
func (b *Batch) PutMeta(m *policy.Meta) error {
	return b.set(metaKey(nil), AppendMeta(nil, m))
}
