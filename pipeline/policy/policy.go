package policy

import (
	"fmt"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// Millis is an event time: milliseconds since the Unix epoch.
type Millis = int64

// Day is 24 hours in Millis: the length of the frequency windows.
const Day Millis = 24 * 60 * 60 * 1000

// ToMillis converts a record timestamp to Millis.
func ToMillis(t time.Time) Millis { return t.UnixMilli() }

// Config holds the configurable parts of the rules. The zero value is not
// valid; use DefaultConfig or fill ContactRetention.
type Config struct {
	// ContactRetention is how long a contact is remembered after the last
	// event between the user and the business. A contact whose last
	// user-initiated interaction is older than this as of a campaign's send
	// time does not count. Default 365 days, the longest audience lookback.
	ContactRetention time.Duration
	// UserCap is the most sponsored messages a user receives across all
	// businesses in any 24 hours (rule 5). 0, the default, turns it off.
	UserCap int
	// ConversationGap, when positive, forbids a sponsored message within
	// this long after the user's last user-initiated interaction with the
	// business (rule 6). 0, the default, turns it off.
	ConversationGap time.Duration
}

// DefaultConfig returns the rules as the design fixes them by default.
func DefaultConfig() Config {
	return Config{ContactRetention: 365 * 24 * time.Hour}
}

// Validate reports the first invalid field of c. Event times have millisecond
// precision, so the durations must be whole milliseconds: a sub-millisecond
// ConversationGap would otherwise silently turn rule 6 off, and a
// sub-millisecond ContactRetention would forget every contact at once.
func (c Config) Validate() error {
	switch {
	case c.ContactRetention <= 0:
		return fmt.Errorf("policy: ContactRetention must be positive, got %s", c.ContactRetention)
	case c.ContactRetention%time.Millisecond != 0:
		return fmt.Errorf("policy: ContactRetention must be a whole number of milliseconds, got %s", c.ContactRetention)
	case c.UserCap < 0:
		return fmt.Errorf("policy: UserCap must be 0 (off) or positive, got %d", c.UserCap)
	case c.ConversationGap < 0:
		return fmt.Errorf("policy: ConversationGap must be 0 (off) or positive, got %s", c.ConversationGap)
	case c.ConversationGap%time.Millisecond != 0:
		return fmt.Errorf("policy: ConversationGap must be a whole number of milliseconds, got %s", c.ConversationGap)
	}
	return nil
}

// Reason is the outcome of a decision about one (campaign, user) pair:
// Delivered, or the first rule that failed.
type Reason uint8

// The outcomes, suppression reasons in the order the rules are checked.
const (
	Delivered Reason = iota
	NoContact
	Blocked
	OptedOut
	NotInAudience
	ConversationGap
	FrequencyBusiness
	FrequencyUser
	numReasons
)

var reasonNames = [numReasons]string{
	"DELIVERED", "NO_CONTACT", "BLOCKED", "OPTED_OUT", "NOT_IN_AUDIENCE",
	"CONVERSATION_GAP", "FREQUENCY_BUSINESS", "FREQUENCY_USER",
}

// Reasons lists every Reason, Delivered first.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// String returns the reason's name as used in logs, metrics and the docs.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// Contact is what a task knows about one (user, business) pair.
type Contact struct {
	// Last holds the latest occurred_at of each user-initiated kind
	// (indexed by schemas.UserMessage, BotStarted, BotCTAClick); 0 = never.
	Last [3]Millis
	// Blocked is the block state set by the latest BLOCK or UNBLOCK by event
	// time; BlockAt is that event's time.
	Blocked bool
	BlockAt Millis
	// OptedOut is the state set by the latest SPONSORED_OPT_OUT or
	// SPONSORED_OPT_IN by event time; OptAt is that event's time.
	OptedOut bool
	OptAt    Millis
	// LastSent is the send time of the latest sponsored message this
	// business delivered to the user; 0 = none.
	LastSent Millis
}

// LastContact returns the latest user-initiated interaction, 0 if none.
func (c *Contact) LastContact() Millis {
	return max(c.Last[0], c.Last[1], c.Last[2])
}

// HasContact reports whether the user ever initiated contact (as far as the
// retained state knows).
func (c *Contact) HasContact() bool { return c.LastContact() > 0 }

// lastEvent returns the latest event of any kind the contact remembers.
func (c *Contact) lastEvent() Millis {
	return max(c.LastContact(), c.BlockAt, c.OptAt, c.LastSent)
}

// Apply records an interaction of kind at event time at and reports whether
// the contact changed. BUSINESS_MESSAGE changes nothing; USER_ERASED is not
// a per-contact event (the runtime deletes the user's whole state) and
// changes nothing here. Of two toggles with the same event time, the one
// applied later wins, so the partition's order breaks ties.
func (c *Contact) Apply(kind schemas.InteractionKind, at Millis) bool {
	switch kind {
	case schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick:
		if at > c.Last[kind] {
			c.Last[kind] = at
			return true
		}
	case schemas.Block, schemas.Unblock:
		if at >= c.BlockAt {
			changed := c.BlockAt != at || c.Blocked != (kind == schemas.Block)
			c.BlockAt, c.Blocked = at, kind == schemas.Block
			return changed
		}
	case schemas.SponsoredOptOut, schemas.SponsoredOptIn:
		if at >= c.OptAt {
			changed := c.OptAt != at || c.OptedOut != (kind == schemas.SponsoredOptOut)
			c.OptAt, c.OptedOut = at, kind == schemas.SponsoredOptOut
			return changed
		}
	}
	return false
}

// Recipient is what a task knows about one user across businesses: the send
// times of the sponsored messages delivered to the user in the last 24
// hours, ascending. It is kept only when the per-user cap is on.
type Recipient struct {
	Sent []Millis
}

// inWindow counts the deliveries with send time in (at - 24h, at].
func (r *Recipient) inWindow(at Millis) int {
	n := 0
	for _, sent := range r.Sent {
		if sent > at-Day && sent <= at {
			n++
		}
	}
	return n
}

// prune drops deliveries that no 24-hour window ending at or after now can
// count any more.
func (r *Recipient) prune(now Millis) {
	i := 0
	for i < len(r.Sent) && r.Sent[i] <= now-Day {
		i++
	}
	if i > 0 {
		r.Sent = append(r.Sent[:0], r.Sent[i:]...)
	}
}

// Campaign is the part of a campaign the rules read.
type Campaign struct {
	ID        string
	Business  string
	SendAt    Millis
	ExpiresAt Millis
	Audience  []schemas.AudienceRule
}

// Policy applies the rules with one Config.
type Policy struct {
	cfg       Config
	retention Millis
	gap       Millis
}

// New returns a Policy for cfg, or the error of cfg.Validate.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Policy{cfg: cfg, retention: cfg.ContactRetention.Milliseconds(), gap: cfg.ConversationGap.Milliseconds()}, nil
}

// Config returns the configuration p applies.
func (p *Policy) Config() Config { return p.cfg }

// Decide decides whether campaign camp, firing as of event time at, reaches
// the user of contact c (nil: the user has no state with the business) whose
// cross-business deliveries are r (nil when the per-user cap is off). On
// Delivered it records the delivery in c and r, so that the windows of later
// campaigns see it; a suppression changes nothing.
func (p *Policy) Decide(c *Contact, r *Recipient, camp *Campaign, at Millis) Reason {
	if c == nil || !c.HasContact() || c.LastContact() < at-p.retention {
		return NoContact
	}
	if c.Blocked {
		return Blocked
	}
	if c.OptedOut {
		return OptedOut
	}
	if !inAudience(c, camp.Audience, at) {
		return NotInAudience
	}
	if p.gap > 0 && c.LastContact() > at-p.gap {
		return ConversationGap
	}
	if c.LastSent > at-Day && c.LastSent <= at && c.LastSent != 0 {
		return FrequencyBusiness
	}
	if p.cfg.UserCap > 0 && r != nil && r.inWindow(at) >= p.cfg.UserCap {
		return FrequencyUser
	}
	c.LastSent = at
	if p.cfg.UserCap > 0 && r != nil {
		// Reuses the slice's array: allocates only when it must grow.
		r.prune(at)
		r.Sent = append(r.Sent, at)
	}
	return Delivered
}

func inAudience(c *Contact, audience []schemas.AudienceRule, at Millis) bool {
	if len(audience) == 0 {
		return true
	}
	for _, rule := range audience {
		if !rule.Kind.UserInitiated() {
			continue
		}
		last := c.Last[rule.Kind]
		if last == 0 {
			continue
		}
		if rule.WithinDays == 0 || last >= at-Millis(rule.WithinDays)*Day {
			return true
		}
	}
	return false
}

// ContactExpired reports whether contact c can be forgotten as of event time
// now: no event between the user and the business (user-initiated, block,
// opt-out or delivery) for longer than the contact retention, and no
// delivery that a 24-hour window ending at or after now still counts (rule
// 4; this matters only when the retention is shorter than a day). Block and
// opt-out times count too, so that a suppression is never forgotten before
// the contact it suppresses.
//
// Forgetting is monotone in now. For replays to decide the same, a task
// tests it as of its task time (never the wall clock) both when it sweeps
// and when it loads a contact to apply an interaction, and starts from a
// zero Contact when it is expired, so that the outcome does not depend on
// when sweeps happened to run.
func (p *Policy) ContactExpired(c *Contact, now Millis) bool {
	return c.lastEvent() < now-p.retention && c.LastSent <= now-Day
}

// RecipientExpired reports whether r holds no delivery that a 24-hour window
// ending at or after now can count.
func (p *Policy) RecipientExpired(r *Recipient, now Millis) bool {
	return len(r.Sent) == 0 || r.Sent[len(r.Sent)-1] <= now-Day
}
