package policy

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/sponsored/sponsor/schemas"
)

// Store is the state of one partition as a Partition reads and writes it,
// within one transaction: its writes are staged, and its reads see them.
// Users and businesses are ids; the store keeps its own key layout and
// encoding, and stores and returns what it is given: the rules (which
// contact an erasure marker covers, what expired) are the Partition's. The
// runtime's implementation is state.Batch.
type Store interface {
	// Contact returns the stored contact between user and business.
	Contact(user, business string) (c Contact, ok bool, err error)
	// PutContact stores the contact between user and business; known
	// says the store holds it already (Contact or Audience returned it).
	PutContact(user, business string, c *Contact, known bool) error
	// Erasure returns the user's erasure marker.
	Erasure(user string) (e Erasure, ok bool, err error)
	// PutErasure stores the user's erasure marker.
	PutErasure(user string, e *Erasure) error
	// Recipient returns the user's recent deliveries across businesses.
	Recipient(user string) (r Recipient, ok bool, err error)
	// PutRecipient stores the user's recent deliveries.
	PutRecipient(user string, r *Recipient) error
	// DeleteRecipient forgets the user's recent deliveries.
	DeleteRecipient(user string) error
	// Audience calls fn, in ascending order of user, with each user after
	// the cursor after ("": from the first) who has a stored contact with
	// business, for up to limit contacts; it returns the last user it went
	// past and whether the business's contacts are exhausted.
	Audience(business, after string, limit int, fn func(user string, c *Contact) error) (last string, done bool, err error)
	// CountContacts returns how many stored contacts business has after
	// the cursor after ("": all).
	CountContacts(business, after string) (int64, error)
	// SweepContacts visits up to limit stored contacts after the cursor
	// after (nil: from the start) and deletes those fn reports true for.
	// It returns the cursor to continue from, nil when the round over the
	// partition's contacts is complete, and how many it deleted. fn may
	// read the store, not write it.
	SweepContacts(after []byte, limit int, fn func(user, business string, c *Contact) (bool, error)) (next []byte, deleted int, err error)
	// SweepRecipients is SweepContacts for the per-user delivery lists.
	SweepRecipients(after []byte, limit int, expired func(r *Recipient) bool) (next []byte, deleted int, err error)
	// SweepErasures is SweepContacts for the erasure markers.
	SweepErasures(after []byte, limit int, fn func(user string, e *Erasure) (bool, error)) (next []byte, deleted int, err error)
	// PutCampaign stores the partition's record of a campaign.
	PutCampaign(p *Progress) error
	// DeleteCampaign forgets the partition's record of a campaign.
	DeleteCampaign(id string) error
	// PutMeta stores the partition's metadata.
	PutMeta(m *Meta) error
}

// Output receives what a Partition decides, for the runtime to turn into
// records and metrics. Its methods are called on the partition's goroutine,
// in the order of the decisions.
type Output interface {
	// Chunking reports that a chunk of c's fan-out begins.
	Chunking(c *Progress)
	// Decided reports the decision about user for campaign c, after the
	// store has recorded a delivery. It is called for every candidate of a
	// fan-out, in ascending user order.
	Decided(c *Progress, user string, reason Reason) error
	// Chunked reports one chunk of c's fan-out, after its decisions: what
	// it went over. When ch.Done, c has fired (Status Fired).
	Chunked(c *Progress, ch Chunk) error
	// Counted reports one interaction of kind counted under tally.
	Counted(tally Tally, kind schemas.InteractionKind)
}

// Chunk is what one chunk of a fan-out went over.
type Chunk struct {
	// Visited is the contacts it went over; Candidates, those it decided
	// about (not forgotten as of the fire time); Delivered, those delivered.
	Visited, Candidates, Delivered int64
	// Done reports that the fan-out is finished.
	Done bool
}

// Tally names what Output.Counted counts.
type Tally uint8

// The tallies.
const (
	// Late: an interaction behind the watermark, applied for later
	// campaigns only.
	Late Tally = iota + 1
	// LateSuppression: a late BLOCK or SPONSORED_OPT_OUT that a delivery
	// already made would not have been made with.
	LateSuppression
	// Erased: an interaction at or before its user's erasure, not stored.
	Erased
	// Forgot: an interaction found its stored contact past the retention
	// (ExpiredBefore), which it starts over from nothing, whether or not
	// the expiry sweep has deleted it yet.
	Forgot
)

// Partition is the state machine of one partition: what a task decides. It
// keeps the stream time and the campaigns the partition remembers (pending
// in Compare order, firing in firing order), admits campaign records,
// fires campaigns by stream time and by the wall clock, fans them out in
// chunks over the contacts of their business with a cursor, applies
// interactions (lateness, erasure) and sweeps what expired. It reads and
// writes through a Store and reports through an Output, given for each
// transaction (Begin); the wall clock is an argument.
//
// A Partition is used by one goroutine at a time.
type Partition struct {
	pol    *Policy
	meta   Meta
	camps  map[string]*Progress // every campaign the partition remembers
	queue  []*Progress          // Pending, in Compare order
	firing []*Progress          // Firing, in the order they fire
	sweep  []byte               // contact expiry sweep cursor (in memory only)
	sweepR []byte               // recipient expiry sweep cursor
	sweepE []byte               // erasure-marker expiry sweep cursor
	// retention is the campaigns topic's retention (0: infinite): a
	// campaign that must be remembered longer than half of it after its
	// record was written is adopted (Progress.Keep).
	retention Millis

	// Per transaction.
	store       Store
	out         Output
	budget      int // decisions left in this transaction
	metaChanged bool
	// held says the last interaction was held for the fan-outs in
	// progress (Held).
	held bool
}

// NewPartition returns a partition that applies pol, with no state: Load
// gives it its state.
func NewPartition(pol *Policy) *Partition {
	return &Partition{pol: pol, meta: Meta{Input: -1}, camps: map[string]*Progress{}}
}

// Load replaces the partition's state with what its store holds: the
// metadata and the records of the campaigns. Anything staged is dropped,
// and the sweeps start their rounds over (an aborted transaction's sweep
// deleted nothing, and a round must visit every key).
//
// The store holds only the campaigns that are exceptions (Progress): the
// others are rebuilt by Replay from the campaigns topic's records from
// Meta.Replay up to Meta.Campaigns, which the runtime feeds it after Load.
func (p *Partition) Load(meta Meta, campaigns []Progress) {
	p.meta = meta
	p.held = false
	// A metadata written before replay offsets: every campaign had a
	// record, so nothing is to be read again.
	for q := len(p.meta.Replay); q < len(p.meta.Campaigns); q++ {
		p.meta.Replay = append(p.meta.Replay, p.meta.Campaigns[q])
	}
	p.sweep, p.sweepR, p.sweepE = nil, nil, nil
	p.camps = make(map[string]*Progress, len(campaigns))
	p.queue, p.firing = p.queue[:0], p.firing[:0]
	for i := range campaigns {
		c := &campaigns[i]
		c.stored, c.dirty = true, false
		if c.Source.Offset < 0 {
			c.Keep = true // nothing in the topic is known to rebuild it from
		}
		p.camps[c.Campaign.ID] = c
		switch c.Status {
		case Pending:
			p.queue = append(p.queue, c)
		case Firing:
			p.firing = append(p.firing, c)
		}
	}
	slices.SortFunc(p.queue, Compare)
	// Fan-outs resume in the order they run (startFiring): those in
	// progress (with a cursor; at most one per business) first, then by
	// fire time and Compare. Among those of one business, which is the
	// order rule 4 depends on, that is the order they had.
	slices.SortFunc(p.firing, func(a, b *Progress) int {
		if (a.Cursor != "") != (b.Cursor != "") {
			if a.Cursor != "" {
				return -1
			}
			return 1
		}
		return firingOrder(a, b)
	})
}

// Begin starts the partition's part of a transaction: reads and writes go
// to store, decisions to out, and the fan-outs decide about at most budget
// candidates until the next Begin.
func (p *Partition) Begin(store Store, out Output, budget int) {
	p.store, p.out, p.budget, p.metaChanged = store, out, budget, false
}

// SetRetention sets the campaigns topic's retention (0: infinite), which
// decides which campaigns are adopted (Progress.Keep).
func (p *Partition) SetRetention(r Millis) { p.retention = r }

// Finish writes what the transaction leaves as exceptions: the record of
// every fan-out still in progress (its cursor) or started and not run yet,
// and the metadata, with its replay offsets, if the transaction changed it.
func (p *Partition) Finish() error {
	for _, c := range p.firing {
		if !c.stored || c.dirty {
			if err := p.put(c); err != nil {
				return err
			}
		}
	}
	if !p.metaChanged {
		return nil
	}
	p.replayOffsets()
	return p.store.PutMeta(&p.meta)
}

// replayOffsets sets Meta.Replay: per campaigns partition, the first record
// of a campaign the partition remembers that Replay must read again (one
// not kept in the store), or Meta.Campaigns when there is none.
func (p *Partition) replayOffsets() {
	r := append(p.meta.Replay[:0], p.meta.Campaigns...)
	for _, c := range p.camps {
		q, off := c.Source.Partition, c.Source.Offset
		if c.Keep || off < 0 || int(q) >= len(r) {
			continue
		}
		r[q] = min(r[q], off)
	}
	p.meta.Replay = r
}

// put writes c's record to the store.
func (p *Partition) put(c *Progress) error {
	c.stored, c.dirty = true, false
	return p.store.PutCampaign(c)
}

// unstore deletes c's record from the store, if it has one.
func (p *Partition) unstore(c *Progress) error {
	if !c.stored {
		return nil
	}
	c.stored, c.dirty = false, false
	return p.store.DeleteCampaign(c.Campaign.ID)
}

// Input returns the next interactions offset the partition processes
// (Meta.Input): -1 before the first.
func (p *Partition) Input() int64 { return p.meta.Input }

// Consumed records that the interactions record at offset off has been
// dealt with (applied, dead-lettered or a control record).
func (p *Partition) Consumed(off int64) { p.meta.Input, p.metaChanged = off+1, true }

// CampaignOffset returns the next offset of campaigns partition q the
// partition reads (Meta.Campaigns).
func (p *Partition) CampaignOffset(q int32) int64 {
	if int(q) < len(p.meta.Campaigns) {
		return p.meta.Campaigns[q]
	}
	return 0
}

// CampaignPartitions makes room for the offsets of n campaigns partitions
// (Meta.Campaigns), at 0 for the new ones.
func (p *Partition) CampaignPartitions(n int) {
	for len(p.meta.Campaigns) < n {
		p.meta.Campaigns = append(p.meta.Campaigns, 0)
	}
	for len(p.meta.Replay) < n {
		p.meta.Replay = append(p.meta.Replay, 0)
	}
}

// ReplayOffset returns the first offset of campaigns partition q that a
// restore reads again (Meta.Replay), as of the last Load or Finish.
func (p *Partition) ReplayOffset(q int32) int64 {
	if int(q) < len(p.meta.Replay) {
		return p.meta.Replay[q]
	}
	return p.CampaignOffset(q)
}

// SetCampaignOffset records that the campaign records of partition q are
// read up to next (exclusive).
func (p *Partition) SetCampaignOffset(q int32, next int64) {
	p.CampaignPartitions(int(q) + 1)
	p.meta.Campaigns[q], p.metaChanged = next, true
}

// Meta returns a copy of the partition's metadata.
func (p *Partition) Meta() Meta {
	m := p.meta
	m.Campaigns = slices.Clone(m.Campaigns)
	m.Replay = slices.Clone(m.Replay)
	return m
}

// Time returns the partition's stream time (Meta.Time).
func (p *Partition) Time() Millis { return p.meta.Time }

// Watermark returns the time every rule is judged as of: the stream time
// minus the grace (Policy.Watermark).
func (p *Partition) Watermark() Millis { return p.pol.Watermark(p.meta.Time) }

// Campaign returns the partition's record of campaign id, nil if it
// remembers none. The record must not be changed.
func (p *Partition) Campaign(id string) *Progress { return p.camps[id] }

// Campaigns returns how many campaigns the partition remembers.
func (p *Partition) Campaigns() int { return len(p.camps) }

// FanningOut reports whether a fan-out is in progress. The partition's
// interactions flow meanwhile, but for those Interaction holds.
func (p *Partition) FanningOut() bool { return len(p.firing) > 0 }

// NextDue returns the send time of the first pending campaign, and false
// when none is pending.
func (p *Partition) NextDue() (Millis, bool) {
	if len(p.queue) == 0 {
		return 0, false
	}
	return p.queue[0].Campaign.SendAt, true
}

// DueByWallClock reports whether a pending campaign must fire by the wall
// clock wall once the partition is caught up (FireByWallClock would start
// it), fan-outs in progress or not: it joins them in firing order.
func (p *Partition) DueByWallClock(wall Millis) bool {
	at, ok := p.NextDue()
	return ok && at < wall-p.pol.Grace()
}

// Admit applies campaign record c, read at src in the campaigns topic (see
// the package function Admit), as of the partition's time and returns the
// verdict. An Invalid record changes nothing: the runtime dead-letters it.
// A LAUNCH that fires at once joins the fan-outs; Fanout runs it.
//
// Admission writes nothing to the store, except for the exceptions that
// Replay could not rebuild from the topic: a campaign that must be
// remembered longer than half the topic's retention after its record
// (adopted, Progress.Keep), a CANCEL read before its LAUNCH, a pending
// campaign at or below the frontier (a send time equal to the last fired
// one's), and any campaign whose source is unknown (NoSource).
func (p *Partition) Admit(c *schemas.Campaign, src Source) (Verdict, error) {
	known := p.camps[c.CampaignID]
	next, verdict := Admit(known, c, p.pol.LateAsOf(p.Watermark()))
	switch verdict {
	case Invalid:
		return verdict, nil
	case Ignored:
		if extend(known, c) && known.stored {
			return verdict, p.put(known)
		}
		return verdict, nil
	case CancelledPending:
		p.queue = slices.DeleteFunc(p.queue, func(q *Progress) bool { return q == known })
	}
	if known == nil {
		next.Source = src
		next.Keep = src.Offset < 0 || p.outlives(next) || verdict == CancelledUnknown
	}
	p.camps[c.CampaignID] = next
	switch next.Status {
	case Pending:
		i, _ := slices.BinarySearchFunc(p.queue, next, Compare)
		p.queue = slices.Insert(p.queue, i, next)
		if next.Keep || next.Key().Compare(p.meta.Frontier) <= 0 {
			return verdict, p.put(next)
		}
	case Firing:
		p.startFiring(next)
		if next.Keep {
			return verdict, p.put(next)
		}
		// Finish writes it if its fan-out outlasts the transaction.
	case Cancelled:
		if next.Keep {
			return verdict, p.put(next)
		}
		// Cancelled while pending: Replay reads the CANCEL again (a
		// pending campaign at or below the frontier rebuilds as done,
		// which a CANCEL leaves as it is).
		return verdict, p.unstore(next)
	case Expired:
		// A repeated LAUNCH expires on arrival again: nothing to keep.
	}
	return verdict, nil
}

// outlives reports whether campaign c must be remembered (until its
// expiry, for dedup; its send time is before) longer than half the
// campaigns topic's retention after its record was written: the topic may
// delete the record before the task is done with it.
func (p *Partition) outlives(c *Progress) bool {
	if p.retention <= 0 || c.Source.Time <= 0 {
		return false
	}
	return c.Campaign.ExpiresAt > c.Source.Time+p.retention/2
}

// extend makes a repeated LAUNCH of a known campaign keep it remembered
// until the repeat's expiry too, if later: until then the repeat, which a
// restore reads again, must find the campaign known. It reports whether it
// changed anything.
func extend(known *Progress, c *schemas.Campaign) bool {
	if c.Action != schemas.Launch || known.Campaign.ExpiresAt == 0 {
		return false
	}
	if at := ToMillis(c.ExpiresAt); at > known.Campaign.ExpiresAt {
		known.Campaign.ExpiresAt = at
		return true
	}
	return false
}

// Replay rebuilds, on restore, what reading campaign record c at src did:
// the runtime feeds it, after Load, the records of the campaigns topic
// from Meta.Replay up to Meta.Campaigns, in offset order per partition. It
// writes nothing. A campaign the store holds a record of is as the record
// says. Of the others, a LAUNCH at or below the frontier, or whose send
// time the partition's time has passed, is done (pending campaigns are
// always after both: they fire as soon as the time passes them, which
// moves the frontier, and one admitted at or below it has a record); any
// other is pending, and a CANCEL after it cancels it.
func (p *Partition) Replay(c *schemas.Campaign, src Source) {
	known := p.camps[c.CampaignID]
	if known != nil && known.stored {
		return
	}
	now := p.pol.LateAsOf(p.Watermark())
	switch c.Action {
	case schemas.Cancel:
		// A CANCEL of a campaign not known had its record (Keep) when it
		// was first read; one of a done campaign changed nothing.
		if known != nil && known.Status == Pending {
			known.Status = Cancelled
			p.queue = slices.DeleteFunc(p.queue, func(q *Progress) bool { return q == known })
		}
	case schemas.Launch:
		sendAt, expiresAt := ToMillis(c.SendAt), ToMillis(c.ExpiresAt)
		if expiresAt < sendAt || !validAudience(c.Audience) {
			return // dead-lettered when first read
		}
		if known != nil {
			extend(known, c)
			return
		}
		pr := &Progress{
			Campaign: Campaign{ID: c.CampaignID, Business: c.BusinessID, SendAt: sendAt, ExpiresAt: expiresAt, Audience: c.Audience},
			Message:  c.Message,
			Status:   Pending,
			Source:   src,
		}
		if pr.Key().Compare(p.meta.Frontier) <= 0 || sendAt < now {
			if now > expiresAt {
				return // forgotten: past its expiry
			}
			pr.Status = Fired
			pr.forget()
			p.camps[c.CampaignID] = pr
			return
		}
		p.camps[c.CampaignID] = pr
		i, _ := slices.BinarySearchFunc(p.queue, pr, Compare)
		p.queue = slices.Insert(p.queue, i, pr)
	}
}

// forget drops what a done campaign no longer needs: dedup needs only its
// id and expiry (and its source, for the replay offsets).
func (c *Progress) forget() {
	c.Message = schemas.Message{}
	c.Campaign.Audience = nil
}

// Interaction applies one interaction of user with business (empty for
// USER_ERASED) of kind at event time at: it first starts the campaigns due
// before it by stream time and continues the fan-outs within the
// transaction's budget.
//
// While fan-outs are still in progress (the budget is used), an
// interaction flows, applied at once, when applying it now decides for
// every fan-out in progress what applying it after them would: see holds.
// One that does not is held: Interaction reports false, having applied
// nothing, and the partition's interactions wait at it (event-time order
// is kept) until the fan-outs end (Held).
func (p *Partition) Interaction(user, business string, kind schemas.InteractionKind, at Millis) (bool, error) {
	w := p.pol.Watermark(at)
	p.startDue(func(c *Progress) bool { return DueByStreamTime(c, w) })
	ok, err := p.Fanout()
	if err != nil {
		return false, err
	}
	applied, err := p.apply(user, business, kind, at, !ok)
	if err != nil || !applied {
		p.held = !applied && err == nil
		return false, err
	}
	p.held = false
	if at > p.meta.Time {
		p.meta.Time, p.metaChanged = at, true
	}
	return true, nil
}

// holds reports whether an interaction of user with business of kind at
// event time at must wait for the fan-outs in progress, because applying
// it now could change what one of them decides about a user it has not
// reached yet: a USER_ERASED (the fan-outs read the erasure markers and,
// with the per-user cap, the deliveries it deletes), or an interaction
// with a business that is fanning out at or before the latest fire time
// of its fan-outs (they count it as of their fire time; after them it
// would be late for them). An interaction after every fire time of its
// business flows: kept in Recent (the fold is capped at foldCap), it is
// invisible to the fan-outs' AsOf. Interactions with other businesses
// touch contacts no fan-out reads. BUSINESS_MESSAGE changes nothing.
//
// An interaction at or before a fire time is held only if that fan-out has
// not decided about the user yet (the user is after its cursor, which
// moves in ascending user order): one it has passed reads the contact no
// more, and a later fan-out of the business, which has not begun, holds
// it anyway.
func (p *Partition) holds(user, business string, kind schemas.InteractionKind, at Millis) bool {
	switch kind {
	case schemas.UserErased:
		return true
	case schemas.BusinessMessage:
		return false
	}
	for _, c := range p.firing {
		if c.Campaign.Business == business && at <= c.FireAt && (c.Cursor == "" || user > c.Cursor) {
			return true
		}
	}
	return false
}

// foldCap returns the latest time an interaction with business may be
// folded into a contact's fields as of (Policy.Observe's watermark) while
// fan-outs are in progress: the earliest fire time of the business's
// fan-outs, whose AsOf must not see what came after it; max when the
// business has none.
func (p *Partition) foldCap(business string) Millis {
	limit := Millis(math.MaxInt64)
	for _, c := range p.firing {
		if c.Campaign.Business == business {
			limit = min(limit, c.FireAt)
		}
	}
	return limit
}

// Held reports whether the partition's interactions wait at a record that
// must not be applied before the fan-outs in progress end (Interaction
// reported false for it): the runtime may stop fetching them until then.
func (p *Partition) Held() bool { return p.held && len(p.firing) > 0 }

// FireByWallClock starts the pending campaigns whose send time the wall
// clock wall has passed (less the grace) and runs the fan-outs within the
// budget; the runtime calls it only when the partition is caught up.
func (p *Partition) FireByWallClock(wall Millis) error {
	w := wall - p.pol.Grace()
	p.startDue(func(c *Progress) bool { return DueByWallClock(c, w) })
	_, err := p.Fanout()
	// The metadata is written even if nothing fired: the stream time a
	// firing raised (startFiring) goes with it.
	p.metaChanged = true
	return err
}

// startDue moves the pending campaigns that due reports true for to the
// firing list, in order.
func (p *Partition) startDue(due func(*Progress) bool) {
	for len(p.queue) > 0 && due(p.queue[0]) {
		c := p.queue[0]
		p.queue = p.queue[1:]
		Start(c)
		p.startFiring(c)
	}
}

// startFiring adds campaign c, just started, to the fan-outs in the order
// they run, the order Load restores (fan-outs with a cursor first, then by
// fire time and Compare): with the per-user cap on, where every fan-out
// runs in turn, behind the one in progress and by fire order after it;
// without, where only the order within a business counts, before the first
// fan-out of c's business that has not begun and comes after c in fire
// order (at the end if none). It raises the stream time to what the fire
// time requires (Policy.AfterFire), so that a LAUNCH that arrives late
// from now on fires as of no earlier time, and moves the frontier.
func (p *Partition) startFiring(c *Progress) {
	i := len(p.firing)
	if p.pol.cfg.UserCap > 0 {
		lo := 0
		if len(p.firing) > 0 && p.firing[0].Cursor != "" {
			lo = 1
		}
		i = lo
		for i < len(p.firing) && firingOrder(p.firing[i], c) <= 0 {
			i++
		}
	} else {
		for j, f := range p.firing {
			if f.Campaign.Business == c.Campaign.Business && f.Cursor == "" && firingOrder(f, c) > 0 {
				i = j
				break
			}
		}
	}
	p.firing = slices.Insert(p.firing, i, c)
	p.raiseTime(c.FireAt)
	if k := c.Key(); k.Compare(p.meta.Frontier) > 0 {
		p.meta.Frontier, p.metaChanged = k, true
	}
}

// firingOrder orders fan-outs: by fire time, then Compare.
func firingOrder(a, b *Progress) int {
	if a.FireAt != b.FireAt {
		return cmp.Compare(a.FireAt, b.FireAt)
	}
	return Compare(a, b)
}

// raiseTime raises the stream time to what a campaign firing as of at
// requires (Policy.AfterFire).
func (p *Partition) raiseTime(at Millis) {
	if at = p.pol.AfterFire(at); at > p.meta.Time {
		p.meta.Time, p.metaChanged = at, true
	}
}

// Fanout continues the fan-outs in progress within the transaction's
// budget. It reports whether every fan-out finished.
//
// Fan-outs that commute share the budget, chunk by chunk: each runnable
// one decides about at most an equal share of what is left per round, so
// that a small campaign is not held back for the whole of a large one. A
// fan-out is runnable when no fan-out before it (in firing order) is of
// its business, since rule 4 sees a business's campaigns in (send_at,
// campaign_id) order; with the per-user cap on (rule 5 counts across
// businesses) only the first runs, one at a time as before. Campaigns of
// different businesses read and write different contacts, so the order of
// their chunks changes no decision.
func (p *Partition) Fanout() (bool, error) {
	for len(p.firing) > 0 {
		if p.budget <= 0 {
			return false, nil
		}
		runnable := p.runnable()
		share := max(1, p.budget/len(runnable))
		for _, c := range runnable {
			if p.budget <= 0 {
				break
			}
			if err := p.fanoutChunk(c, min(share, p.budget)); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// runnable returns the fan-outs that may run a chunk now, in firing order.
func (p *Partition) runnable() []*Progress {
	if p.pol.cfg.UserCap > 0 || len(p.firing) == 1 {
		return p.firing[:1]
	}
	out := make([]*Progress, 0, len(p.firing))
	for i, c := range p.firing {
		if !slices.ContainsFunc(p.firing[:i], func(o *Progress) bool { return o.Campaign.Business == c.Campaign.Business }) {
			out = append(out, c)
		}
	}
	return out
}

// fanoutChunk runs one chunk of c's fan-out, of at most limit decisions.
func (p *Partition) fanoutChunk(c *Progress, limit int) error {
	p.out.Chunking(c)
	ch, err := p.chunk(c, limit)
	if err != nil {
		return fmt.Errorf("fan out campaign %s: %w", c.Campaign.ID, err)
	}
	if ch.Done {
		c.Status, c.Cursor = Fired, ""
		p.firing = slices.DeleteFunc(p.firing, func(o *Progress) bool { return o == c })
	} else {
		c.dirty = true // Finish writes the cursor
	}
	if err := p.out.Chunked(c, ch); err != nil {
		return err
	}
	if ch.Done {
		// A fan-out that began and ended in this transaction
		// writes nothing: the frontier says it is done. One whose
		// record was written deletes it, unless the record must be
		// kept until the campaign's expiry.
		var err error
		if c.Keep {
			c.forget()
			err = p.put(c)
		} else {
			err = p.unstore(c)
			c.forget()
		}
		if err != nil {
			return err
		}
	}
	p.raiseTime(c.FireAt)
	return nil
}

// chunk decides about the next contacts of c's business after its cursor,
// within the budget, and moves the cursor past them.
func (p *Partition) chunk(c *Progress, limit int) (Chunk, error) {
	var ch Chunk
	var rec Recipient
	userCap := p.pol.cfg.UserCap > 0
	last, done, err := p.audience(c.Campaign.Business, c.Cursor, limit, func(user string, contact *Contact, known bool) error {
		p.budget--
		ch.Visited++
		if asOf := p.pol.AsOf(contact, c.FireAt); p.pol.ContactExpired(&asOf, c.FireAt) {
			// Forgotten as of the send time, whether or not a sweep
			// has deleted it yet: not a candidate, as if swept, so
			// that the decisions (and their NO_CONTACT records) do
			// not depend on when sweeps happened to run.
			return nil
		}
		var r *Recipient
		if userCap {
			var err error
			rec, _, err = p.store.Recipient(user)
			if err != nil {
				return err
			}
			r = &rec
		}
		reason := p.pol.Decide(contact, r, &c.Campaign, c.FireAt)
		ch.Candidates++
		if reason == Delivered {
			ch.Delivered++
			if err := p.putContact(user, c.Campaign.Business, contact, known); err != nil {
				return err
			}
			if r != nil {
				if err := p.store.PutRecipient(user, r); err != nil {
					return err
				}
			}
		}
		return p.out.Decided(c, user, reason)
	})
	if err != nil {
		return ch, err
	}
	c.Cursor = last
	ch.Done = done
	return ch, nil
}

// apply records one interaction in the state. The campaigns due before it
// have fired. With fanning (fan-outs are in progress and it would run
// beside them) it applies nothing and reports false for an interaction
// that must wait for them: see holds, and a contact of a business fanning
// out that the interaction would forget as past the retention (the
// fan-outs judge it as of their fire time, which may still keep it).
func (p *Partition) apply(user, business string, kind schemas.InteractionKind, at Millis, fanning bool) (bool, error) {
	if fanning && p.holds(user, business, kind, at) {
		return false, nil
	}
	late := at < p.Watermark()
	if kind == schemas.UserErased {
		if late {
			p.out.Counted(Late, kind)
		}
		// The marker covers every interaction of the user up to the
		// erasure's own time, whenever it arrives.
		return true, p.eraseUser(user, at)
	}
	if kind == schemas.BusinessMessage {
		if late {
			p.out.Counted(Late, kind)
		}
		return true, nil
	}
	c, known, e, erased, err := p.lookup(user, business)
	if err != nil {
		return false, err
	}
	// A contact past retention is forgotten whether or not the expiry sweep
	// has reached it yet, so a replay decides the same.
	// Folded in only what no campaign still to fire can be before: the
	// earliest fire time from now on is LateAsOf of the watermark.
	w := p.pol.LateAsOf(p.pol.Watermark(max(p.meta.Time, at)))
	expired := !(erased && at <= e.At) && p.pol.ExpiredBefore(&c, at, w)
	fold := w
	if fanning {
		if expired && !c.Empty() && p.foldCap(business) < math.MaxInt64 {
			return false, nil
		}
		// Nothing after the fire time of a fan-out in progress is
		// folded: its AsOf then sees the contact as if the interaction
		// had waited.
		fold = min(w, p.foldCap(business))
	}
	if late {
		p.out.Counted(Late, kind)
	}
	if erased && at <= e.At {
		p.out.Counted(Erased, kind) // not dead-lettered: that would keep what the user asked to erase
		return true, nil
	}
	if expired {
		if !c.Empty() {
			p.out.Counted(Forgot, kind)
		}
		c = Contact{}
	}
	if !known && c.Empty() && p.pol.Forgotten(at, w) {
		// A new contact forgotten on arrival (the interaction is more than
		// the retention behind the watermark): nothing to store, and not
		// storing it keeps out an erased user's past once the marker is
		// gone (sweepErasures).
		return true, nil
	}
	if late && c.LateSuppression(kind, at) {
		p.out.Counted(LateSuppression, kind)
	}
	if !p.pol.Observe(&c, kind, at, fold) {
		return true, nil
	}
	return true, p.putLookedUp(user, business, &c, known, e, erased)
}

// Expire forgets, within limit keys of each kind per call, what no rule
// can use any more as of the partition's time: contacts past retention,
// erasure markers that keep nothing out any more, per-user delivery lists
// with nothing in the last 24 hours, finished campaigns past their expiry.
func (p *Partition) Expire(limit int) error {
	if p.meta.Time == 0 {
		return nil
	}
	// As of the earliest time a campaign can still fire as of, and no
	// later than the earliest fire time of the fan-outs in progress: the
	// stream time moves on while they run (interactions flow), and they
	// judge expiry as of their fire time.
	now := p.pol.LateAsOf(p.Watermark())
	for _, c := range p.firing {
		now = min(now, c.FireAt)
	}
	next, err := p.sweepContacts(p.sweep, limit, func(c *Contact) bool {
		return p.pol.ContactExpired(c, now)
	})
	if err != nil {
		return err
	}
	p.sweep = next
	if next == nil {
		// A round over every contact of the partition is complete: the
		// erasure markers it began after have no stale contact left. The
		// count is written with the next metadata (not on its own: an
		// idle task would then write a transaction per tick); a restart
		// may lose some increments, which only delays a marker's
		// deletion.
		p.meta.Rounds++
	}
	next, err = p.sweepErasures(p.sweepE, limit, func(at Millis) bool {
		return p.pol.Forgotten(at, now)
	})
	if err != nil {
		return err
	}
	p.sweepE = next
	if p.pol.cfg.UserCap > 0 {
		next, _, err := p.store.SweepRecipients(p.sweepR, limit, func(r *Recipient) bool {
			return p.pol.RecipientExpired(r, now)
		})
		if err != nil {
			return err
		}
		p.sweepR = next
	}
	for id, c := range p.camps {
		if Forgettable(c, now) {
			if err := p.unstore(c); err != nil {
				return err
			}
			delete(p.camps, id)
		}
	}
	return nil
}

// Adopt writes the record (Progress.Keep) of every campaign the partition
// remembers through the campaigns topic only whose topic record is older
// than half the topic's retention by the wall clock wall: the topic may
// delete it before the partition is done with it (a quiet partition whose
// time moves slowly keeps done campaigns until their expiry). Admission
// adopts most such campaigns already; this is the safety net.
func (p *Partition) Adopt(wall Millis) error {
	if p.retention <= 0 {
		return nil
	}
	for _, c := range p.camps {
		if c.Keep || c.Source.Offset < 0 || c.Source.Time <= 0 || c.Source.Time >= wall-p.retention/2 {
			continue
		}
		c.Keep = true
		if err := p.put(c); err != nil {
			return err
		}
		p.metaChanged = true // the replay offsets move on
	}
	return nil
}
