package policy

import (
	"cmp"

	"github.com/sponsored/sponsor/schemas"
)

// Status is where a campaign is in its life inside one task.
type Status uint8

// The campaign statuses.
const (
	// Pending: launched, waiting for the task's time to pass its send time.
	Pending Status = iota + 1
	// Firing: its fan-out has begun and is not finished (see Progress.Cursor).
	Firing
	// Fired: its fan-out is finished; it never fires again.
	Fired
	// Cancelled: a CANCEL arrived before it fired (or before its LAUNCH).
	Cancelled
	// Expired: its expiry passed before it could fire.
	Expired
)

var statusNames = [...]string{"", "PENDING", "FIRING", "FIRED", "CANCELLED", "EXPIRED"}

// String returns the status name.
func (s Status) String() string {
	if int(s) < len(statusNames) && s > 0 {
		return statusNames[s]
	}
	return "UNKNOWN"
}

// Done reports whether a campaign in status s will never deliver again.
func (s Status) Done() bool { return s == Fired || s == Cancelled || s == Expired }

// Progress is a task's record of one campaign.
type Progress struct {
	Campaign Campaign
	Message  schemas.Message
	Status   Status
	// FireAt is the event time the campaign fires as of: its send time, or
	// the task's time when it arrived late. Set when it starts firing.
	FireAt Millis
	// Cursor is the last user the fan-out decided about; empty before the
	// first chunk. Users are visited in ascending byte order.
	Cursor string
	// Source is where the campaign's first record (its LAUNCH, or a
	// CANCEL read before it) is in the campaigns topic; Offset -1 when
	// unknown (a record written before sources were kept).
	Source Source
	// Keep says the task's store keeps this record until the campaign is
	// forgettable (Forgettable), because the campaigns topic may no longer
	// hold what rebuilding it needs: adopted past the topic's retention,
	// cancelled before its LAUNCH was read, or written before sources
	// were kept. A record without Keep is an exception of the moment (a
	// fan-out across transactions, a pending campaign at or below the
	// frontier) and is deleted once the campaign is done.
	Keep bool

	// stored says the store holds a record of the campaign; dirty, that
	// the record in memory changed since it was written. Both in memory
	// only.
	stored, dirty bool
}

// Source is where a campaign record is in the campaigns topic.
type Source struct {
	// Partition and Offset locate the record; Offset -1: unknown.
	Partition int32
	Offset    int64
	// Time is the record's timestamp (0: unknown), against which the
	// topic's retention deletes it.
	Time Millis
}

// NoSource is the Source of a record whose place in the topic is unknown:
// a campaign admitted from it is kept in the store as before sources.
var NoSource = Source{Offset: -1}

// Key is a campaign's place in firing order: (send time, id).
type Key struct {
	SendAt Millis
	ID     string
}

// Compare orders keys as campaigns fire: by send time, then id.
func (k Key) Compare(o Key) int {
	if c := cmp.Compare(k.SendAt, o.SendAt); c != 0 {
		return c
	}
	return cmp.Compare(k.ID, o.ID)
}

// Key returns the campaign's place in firing order.
func (p *Progress) Key() Key { return Key{SendAt: p.Campaign.SendAt, ID: p.Campaign.ID} }

// Verdict says what reading a campaign record did.
type Verdict uint8

// The verdicts of Admit.
const (
	// Accepted: a new pending campaign (or one that fires at once: check
	// Progress.Status == Firing).
	Accepted Verdict = iota + 1
	// CancelledPending: a CANCEL stopped a campaign before it fired.
	CancelledPending
	// CancelledUnknown: a CANCEL for a campaign not seen yet; its LAUNCH,
	// if it comes, is ignored.
	CancelledUnknown
	// Ignored: a duplicate LAUNCH, a LAUNCH after a CANCEL, or a CANCEL after
	// the campaign fired. The record changes nothing.
	Ignored
	// ExpiredOnArrival: a LAUNCH whose expiry is already past the task's time.
	ExpiredOnArrival
	// Invalid: a LAUNCH that expires before it is sent, whose audience has a
	// rule of a kind that is not user-initiated or a negative within_days,
	// or a record whose action is neither LAUNCH nor CANCEL. Dead letter.
	Invalid
)

var verdictNames = [...]string{"", "ACCEPTED", "CANCELLED_PENDING", "CANCELLED_UNKNOWN", "IGNORED", "EXPIRED_ON_ARRIVAL", "INVALID"}

// String returns the verdict name.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) && v > 0 {
		return verdictNames[v]
	}
	return "UNKNOWN"
}

// Admit applies campaign record c to the task's knowledge of it (known, nil
// if the task never saw this campaign id), given the task's time now (the
// largest event time it has processed or fired as of). It returns the new
// record (nil when there is nothing to keep) and a verdict.
//
// A LAUNCH whose send time is already passed (send_at < now) fires at once,
// as of now, unless now is past its expiry: the returned Progress then has
// status Firing and FireAt = now.
func Admit(known *Progress, c *schemas.Campaign, now Millis) (*Progress, Verdict) {
	switch c.Action {
	case schemas.Cancel:
		if known == nil {
			return &Progress{Campaign: Campaign{ID: c.CampaignID, Business: c.BusinessID}, Status: Cancelled}, CancelledUnknown
		}
		if known.Status == Pending {
			next := *known
			next.Status = Cancelled
			return &next, CancelledPending
		}
		return known, Ignored
	case schemas.Launch:
		sendAt, expiresAt := ToMillis(c.SendAt), ToMillis(c.ExpiresAt)
		if expiresAt < sendAt || !validAudience(c.Audience) {
			return known, Invalid
		}
		if known != nil {
			return known, Ignored
		}
		p := &Progress{
			Campaign: Campaign{ID: c.CampaignID, Business: c.BusinessID, SendAt: sendAt, ExpiresAt: expiresAt, Audience: c.Audience},
			Message:  c.Message,
			Status:   Pending,
		}
		if sendAt < now {
			if now > expiresAt {
				p.Status = Expired
				return p, ExpiredOnArrival
			}
			p.Status, p.FireAt = Firing, now
		}
		return p, Accepted
	default:
		// An action this code does not know must not launch anything.
		return known, Invalid
	}
}

// validAudience reports whether every rule names a user-initiated kind and a
// lookback of 0 (ever) or more days.
func validAudience(audience []schemas.AudienceRule) bool {
	for _, r := range audience {
		if !r.Kind.UserInitiated() || r.WithinDays < 0 {
			return false
		}
	}
	return true
}

// DueByStreamTime reports whether a pending campaign must fire before the task
// processes an interaction at event time next: an interaction exactly at the
// send time counts as before it.
func DueByStreamTime(p *Progress, next Millis) bool {
	return p.Status == Pending && p.Campaign.SendAt < next
}

// DueByWallClock reports whether a pending campaign must fire on a task that
// has caught up with its partition, when the wall clock reads wall.
func DueByWallClock(p *Progress, wall Millis) bool {
	return p.Status == Pending && p.Campaign.SendAt < wall
}

// Start moves a pending campaign to Firing as of its send time.
func Start(p *Progress) {
	p.Status, p.FireAt = Firing, p.Campaign.SendAt
}

// Compare orders campaigns the way a task fires them: by send time, then id.
func Compare(a, b *Progress) int {
	if c := cmp.Compare(a.Campaign.SendAt, b.Campaign.SendAt); c != 0 {
		return c
	}
	return cmp.Compare(a.Campaign.ID, b.Campaign.ID)
}

// Forgettable reports whether a task may delete its record of a finished
// campaign as of time now: once now is past the campaign's expiry, a
// repeated LAUNCH could not fire anyway (it would expire on arrival).
func Forgettable(p *Progress, now Millis) bool {
	return p.Status.Done() && p.Campaign.ExpiresAt != 0 && now > p.Campaign.ExpiresAt
}
