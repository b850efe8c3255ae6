package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// UserView is what the store knows about one user, decoded for people: the
// answer of `sponsor state get` and of the runner's /state/user endpoint.
// It shows only what the state holds; times are UTC.
type UserView struct {
	User string `json:"user"`
	// Business is the filter asked for: empty for every contact.
	Business string `json:"business,omitempty"`
	// ContactRetention is the retention Expired is computed with: the
	// default of the rules (a pipeline run with --contact-retention may
	// use another).
	ContactRetention string `json:"contact_retention"`
	// Partitions are the store's partitions that hold keys of the user:
	// normally one, the partition of the interactions topic the user's key
	// hashes to. A store may also keep a stale copy of a partition its
	// instance no longer owns.
	Partitions []PartitionView `json:"partitions"`
}

// PartitionView is what one partition of the store knows about the user.
type PartitionView struct {
	Partition int32 `json:"partition"`
	// Owned is set by a running instance (its /state/user): whether it
	// owns the partition's task now. False: a stale copy of a partition
	// it owned before a rebalance; ask the owner. Absent when read from a
	// state folder.
	Owned *bool `json:"owned,omitempty"`
	// Checkpoint is the next changelog offset the partition's state needs:
	// the state reflects the changelog up to here.
	Checkpoint int64 `json:"checkpoint"`
	// InputOffset is the next interactions offset the task will process
	// (-1: none processed yet).
	InputOffset int64 `json:"input_offset"`
	// TaskTime is the task's time: the largest event time it has processed
	// or fired a campaign as of. Expiry and windows are judged as of it.
	TaskTime *time.Time `json:"task_time,omitempty"`
	// Contacts are the user's (user, business) contacts, by business.
	Contacts []ContactView `json:"contacts"`
	// Deliveries are the sponsored messages the state remembers delivering
	// to the user: the latest one of each business (what rule 4's 24-hour
	// window reads), by send time.
	Deliveries []DeliveryView `json:"deliveries"`
	// RecipientSentAt is the user's recipient record: the send times of
	// the deliveries across businesses that rule 5 (the per-user cap)
	// counts, ascending. The pipeline keeps it only when the cap is on;
	// it records no business or campaign.
	RecipientSentAt []time.Time `json:"recipient_sent_at,omitempty"`
}

// ContactView is one (user, business) contact.
type ContactView struct {
	Business string `json:"business"`
	// LastInteraction is the latest occurred_at of each user-initiated
	// kind the user sent the business (a kind never sent is absent).
	LastInteraction map[string]time.Time `json:"last_interaction"`
	// Blocked is the state set by the latest BLOCK or UNBLOCK by event
	// time: BlockedSince is that BLOCK's time, UnblockedSince that
	// UNBLOCK's (both absent: never toggled).
	Blocked        bool       `json:"blocked"`
	BlockedSince   *time.Time `json:"blocked_since,omitempty"`
	UnblockedSince *time.Time `json:"unblocked_since,omitempty"`
	// OptedOut is the state set by the latest SPONSORED_OPT_OUT or
	// SPONSORED_OPT_IN, with its time in OptedOutSince or OptedInSince.
	OptedOut      bool       `json:"opted_out"`
	OptedOutSince *time.Time `json:"opted_out_since,omitempty"`
	OptedInSince  *time.Time `json:"opted_in_since,omitempty"`
	// LastSent is the send time of the latest sponsored message the
	// business delivered to the user.
	LastSent *time.Time `json:"last_sent,omitempty"`
	// Expired reports whether the contact is past the contact retention
	// as of the task time: the rules treat it as no contact, and the next
	// sweep deletes it.
	Expired bool `json:"expired"`
}

// DeliveryView is a delivery the state remembers.
type DeliveryView struct {
	Business string    `json:"business"`
	SentAt   time.Time `json:"sent_at"`
	// Campaigns are the campaigns of Business that the partition fired as
	// of SentAt and still keeps a record of. The state stores when a
	// business last delivered to the user, not which campaign did, and a
	// partition keeps a campaign's record only while it is an exception
	// (a fan-out across transactions, an adopted campaign: docs/design.md,
	// "Campaign state"), so this is usually empty: the inbox and the
	// decisions topics name the campaign. When it lists one campaign, it
	// is the one.
	Campaigns []string `json:"campaigns"`
	// InWindow reports whether a 24-hour window ending at the task time
	// still counts the delivery: the business cannot deliver to the user
	// again before SentAt + 24h.
	InWindow bool `json:"in_window"`
}

// NotFoundError is returned by User when no partition of the store holds
// the user.
type NotFoundError struct {
	User string
	// Partitions are the partitions the store holds.
	Partitions []int32
}

func (e *NotFoundError) Error() string {
	ps := make([]string, len(e.Partitions))
	for i, p := range e.Partitions {
		ps[i] = strconv.Itoa(int(p))
	}
	held := "none"
	if len(ps) > 0 {
		held = strings.Join(ps, ", ")
	}
	return fmt.Sprintf("user %s is not in this state (partitions %s)", e.User, held)
}

// Partitions returns the partitions the store holds keys of, ascending.
func (s *Store) Partitions() ([]int32, error) { return partitions(s.db) }

func partitions(r reader) ([]int32, error) {
	it, err := r.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("list state partitions: %w", err)
	}
	defer it.Close()
	var ps []int32
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < prefixLen {
			return nil, fmt.Errorf("%w: key %q is shorter than a partition prefix", ErrCorrupt, k)
		}
		p := binary.BigEndian.Uint32(k)
		ps = append(ps, int32(p))
		if p == ^uint32(0) {
			break
		}
		ok = it.SeekGE(binary.BigEndian.AppendUint32(nil, p+1))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list state partitions: %w", err)
	}
	return ps, nil
}

// User returns what the store knows about user, only its contact with
// business when business is not empty. It reads the committed state (what
// the tasks' batches applied after their transactions committed), so it is
// safe to call while the tasks run. When no partition holds the user it
// returns a *NotFoundError. Expiry is judged with the rules of pol, which
// must be the instance's (its contact retention and grace).
func (s *Store) User(user, business string, pol *policy.Policy) (UserView, error) {
	if pol == nil {
		return UserView{}, errors.New("state: User needs the instance's policy to judge expiry")
	}
	v := UserView{User: user, Business: business, ContactRetention: pol.Config().ContactRetention.String(), Partitions: []PartitionView{}}
	// One snapshot, so the partitions and their keys are read as of one
	// moment even while tasks commit.
	snap := s.db.NewSnapshot()
	defer snap.Close()
	ps, err := partitions(snap)
	if err != nil {
		return v, err
	}
	for _, p := range ps {
		pv, found, err := partitionView(snap, pol, p, user, business)
		if err != nil {
			return v, fmt.Errorf("user %s in partition %d: %w", user, p, err)
		}
		if found {
			v.Partitions = append(v.Partitions, pv)
		}
	}
	if len(v.Partitions) == 0 {
		return v, &NotFoundError{User: user, Partitions: ps}
	}
	return v, nil
}

// reader is what the views read from: the DB or a snapshot of it.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// get returns a copy of the value of key, nil when absent.
func get(r reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func utc(ms policy.Millis) time.Time { return time.UnixMilli(ms).UTC() }

func utcPtr(ms policy.Millis) *time.Time {
	if ms == 0 {
		return nil
	}
	t := utc(ms)
	return &t
}

// partitionView reads partition p's keys of user; found is false when the
// partition holds none (no contact at all and no recipient record).
func partitionView(r reader, pol *policy.Policy, p int32, user, business string) (pv PartitionView, found bool, err error) {
	pv = PartitionView{Partition: p, Checkpoint: -1, InputOffset: -1, Contacts: []ContactView{}, Deliveries: []DeliveryView{}}
	base := appendPartition(nil, p)

	// The user's erasure marker: contacts from before it do not count.
	var erasure *policy.Erasure
	if ev, err := get(r, erasureKey(append([]byte(nil), base...), user)); err != nil {
		return pv, false, err
	} else if ev != nil {
		e, err := DecodeErasure(ev)
		if err != nil {
			return pv, false, fmt.Errorf("erasure record: %w", err)
		}
		erasure = &e
	}
	// The user's contacts: every business, then filtered, so that a user
	// known to the partition but not to business still counts as found.
	// Contacts are keyed by business first (for the fan-out), so this
	// scans every contact of the partition: fine for a look-up by hand,
	// about a second per 10M contacts.
	prefix := append(append([]byte(nil), base...), kindBusinessContact)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return pv, false, err
	}
	type contact struct {
		business string
		c        policy.Contact
	}
	var contacts []contact
	for it.First(); it.Valid(); it.Next() {
		biz, u, err := splitBusinessContact(it.Key()[prefixLen:])
		if err != nil {
			it.Close()
			return pv, false, err
		}
		if string(u) != user {
			continue
		}
		if business != "" && string(biz) != business {
			found = found || erasure == nil || !erasure.Covers(string(biz))
			continue
		}
		c, err := DecodeContact(it.Value())
		if err != nil {
			it.Close()
			return pv, false, fmt.Errorf("contact with %q: %w", biz, err)
		}
		if erasure != nil {
			// From before the erasure: only what it holds of after it counts.
			var ok bool
			if c, _, ok = erasure.After(string(biz), &c); !ok {
				continue
			}
		}
		found = true
		// As the user stands now: the recent interactions a grace holds
		// apart count too.
		contacts = append(contacts, contact{string(biz), pol.AsOf(&c, math.MaxInt64)})
	}
	if err := it.Close(); err != nil {
		return pv, false, err
	}

	rv, err := get(r, recipientKey(append([]byte(nil), base...), user))
	if err != nil {
		return pv, false, err
	}
	if rv != nil {
		found = true
		rec, err := DecodeRecipient(rv)
		if err != nil {
			return pv, false, fmt.Errorf("recipient record: %w", err)
		}
		for _, t := range rec.Sent {
			pv.RecipientSentAt = append(pv.RecipientSentAt, utc(t))
		}
	}
	if !found {
		return pv, false, nil
	}

	if cv, err := get(r, append(append([]byte(nil), base...), kindCheckpoint)); err != nil {
		return pv, false, err
	} else if cv != nil {
		d := decoder{b: cv}
		d.version("checkpoint")
		pv.Checkpoint = d.int()
		if err := d.done("checkpoint"); err != nil {
			return pv, false, err
		}
	}
	var meta policy.Meta
	if mv, err := get(r, metaKey(append([]byte(nil), base...))); err != nil {
		return pv, false, err
	} else if mv != nil {
		if meta, err = DecodeMeta(mv); err != nil {
			return pv, false, err
		}
		pv.InputOffset = meta.Input
		pv.TaskTime = utcPtr(meta.Time)
	}

	var fired map[string][]string // business -> campaigns fired as of a time, keyed business+"\x00"+time
	for _, c := range contacts {
		cv := ContactView{
			Business:        c.business,
			LastInteraction: map[string]time.Time{},
			Blocked:         c.c.Blocked,
			OptedOut:        c.c.OptedOut,
			LastSent:        utcPtr(c.c.LastSent),
			Expired:         pol.ContactExpired(&c.c, pol.Watermark(meta.Time)),
		}
		for k, t := range c.c.Last {
			if t != 0 {
				cv.LastInteraction[schemas.InteractionKind(k).String()] = utc(t)
			}
		}
		if c.c.BlockAt != 0 {
			if c.c.Blocked {
				cv.BlockedSince = utcPtr(c.c.BlockAt)
			} else {
				cv.UnblockedSince = utcPtr(c.c.BlockAt)
			}
		}
		if c.c.OptAt != 0 {
			if c.c.OptedOut {
				cv.OptedOutSince = utcPtr(c.c.OptAt)
			} else {
				cv.OptedInSince = utcPtr(c.c.OptAt)
			}
		}
		pv.Contacts = append(pv.Contacts, cv)
		if c.c.LastSent == 0 {
			continue
		}
		if fired == nil {
			if fired, err = firedCampaigns(r, base); err != nil {
				return pv, false, err
			}
		}
		pv.Deliveries = append(pv.Deliveries, DeliveryView{
			Business:  c.business,
			SentAt:    utc(c.c.LastSent),
			Campaigns: append([]string{}, fired[firedKey(c.business, c.c.LastSent)]...),
			InWindow:  meta.Time != 0 && c.c.LastSent > meta.Time-policy.Day,
		})
	}
	slices.SortStableFunc(pv.Deliveries, func(a, b DeliveryView) int { return a.SentAt.Compare(b.SentAt) })
	return pv, true, nil
}

func firedKey(business string, at policy.Millis) string {
	return business + "\x00" + strconv.FormatInt(at, 10)
}

// firedCampaigns indexes the partition's records of campaigns that fired
// (or are firing) by business and fire time.
func firedCampaigns(r reader, base []byte) (map[string][]string, error) {
	prefix := append(append([]byte(nil), base...), kindCampaign)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string][]string{}
	for it.First(); it.Valid(); it.Next() {
		pr, err := DecodeProgress(it.Value())
		if err != nil {
			return nil, fmt.Errorf("campaign %q: %w", it.Key()[len(prefix):], err)
		}
		if pr.Status != policy.Fired && pr.Status != policy.Firing {
			continue
		}
		k := firedKey(pr.Campaign.Business, pr.FireAt)
		out[k] = append(out[k], pr.Campaign.ID)
	}
	return out, it.Error()
}
