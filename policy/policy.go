package policy

import (
	"fmt"
	"slices"
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
	// Grace is the allowed lateness of interactions: a task fires a
	// campaign only once its stream time (the largest occurred_at it has
	// processed) has passed send_at + Grace, so that every interaction at
	// most Grace behind the stream time is counted as of its event time,
	// whatever the order it arrived in. The task's watermark, stream time
	// minus Grace, is the time every rule is judged as of (Watermark). 0,
	// the default, fires as soon as the stream time passes send_at.
	Grace time.Duration
}

// DefaultContactRetention is Config.ContactRetention's default: 365 days,
// the longest audience lookback.
const DefaultContactRetention = 365 * 24 * time.Hour

// DefaultConfig returns the rules as the design fixes them by default.
func DefaultConfig() Config {
	return Config{ContactRetention: DefaultContactRetention}
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
	case c.Grace < 0:
		return fmt.Errorf("policy: Grace must be 0 (off) or positive, got %s", c.Grace)
	case c.Grace%time.Millisecond != 0:
		return fmt.Errorf("policy: Grace must be a whole number of milliseconds, got %s", c.Grace)
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
	// Recent holds the interactions that were ahead of the task's
	// watermark when they were applied, ascending by event time (ties in
	// the order applied). The fields above fold in only what is at or
	// behind it, so that a campaign firing later as of a send time before
	// one of these does not count it (AsOf). Always empty with no grace.
	Recent []Event
}

// Event is one interaction of a contact: its kind and event time.
type Event struct {
	Kind schemas.InteractionKind
	At   Millis
}

// LastContact returns the latest user-initiated interaction, 0 if none,
// counting the recent ones.
func (c *Contact) LastContact() Millis {
	last := max(c.Last[0], c.Last[1], c.Last[2])
	for _, e := range c.Recent {
		if e.Kind.UserInitiated() {
			last = max(last, e.At)
		}
	}
	return last
}

// HasContact reports whether the user ever initiated contact (as far as the
// retained state knows).
func (c *Contact) HasContact() bool { return c.LastContact() > 0 }

// lastEvent returns the latest event of any kind the contact remembers.
func (c *Contact) lastEvent() Millis {
	last := max(c.LastContact(), c.BlockAt, c.OptAt, c.LastSent)
	if n := len(c.Recent); n > 0 {
		last = max(last, c.Recent[n-1].At)
	}
	return last
}

// Observe records an interaction of kind at event time at in contact c,
// given the task's watermark (Watermark): an interaction at or behind it is
// folded into the contact at once (Contact.Apply), one ahead of it is kept
// in Recent until the watermark passes it, and the recent interactions the
// watermark has passed are folded first, in event-time order. It reports
// whether the contact changed. With no grace the watermark is the stream
// time, which no interaction is ahead of once it is applied, so Recent
// stays empty.
func (p *Policy) Observe(c *Contact, kind schemas.InteractionKind, at, watermark Millis) bool {
	changed := p.fold(c, watermark)
	if at <= watermark || !changesContact(kind) {
		return c.Apply(kind, at) || changed
	}
	if kind.UserInitiated() && c.Last[kind] >= at {
		return changed // nothing as of any time the watermark allows
	}
	i := len(c.Recent)
	for i > 0 && c.Recent[i-1].At > at {
		i--
	}
	for j := i - 1; j >= 0 && c.Recent[j].At == at; j-- {
		if c.Recent[j].Kind == kind {
			return changed // a duplicate
		}
	}
	c.Recent = slices.Insert(c.Recent, i, Event{kind, at})
	return true
}

// step applies one interaction to the contact's fields as the history in
// event-time order does: a contact already forgotten as of the
// interaction's time (as ContactExpired judges it) starts over from
// nothing first, block and opt-out included.
func (p *Policy) step(c *Contact, e Event) {
	if last := c.lastFolded(); last != 0 && last < e.At-p.retention && c.LastSent <= e.At-Day {
		*c = Contact{Recent: c.Recent}
	}
	c.Apply(e.Kind, e.At)
}

// Empty reports whether the contact holds nothing: no interaction, no
// delivery.
func (c *Contact) Empty() bool { return c.lastFolded() == 0 && len(c.Recent) == 0 }

// lastFolded is lastEvent without the recent interactions.
func (c *Contact) lastFolded() Millis {
	return max(c.Last[0], c.Last[1], c.Last[2], c.BlockAt, c.OptAt, c.LastSent)
}

// fold applies the recent interactions at or behind watermark to the
// contact's fields, in order (step), and drops them from Recent.
func (p *Policy) fold(c *Contact, watermark Millis) bool {
	n := 0
	for n < len(c.Recent) && c.Recent[n].At <= watermark {
		p.step(c, c.Recent[n])
		n++
	}
	if n == 0 {
		return false
	}
	c.Recent = slices.Delete(c.Recent, 0, n)
	if len(c.Recent) == 0 {
		c.Recent = nil
	}
	return true
}

// AsOf returns contact c as it stood at event time at: its fields with the
// recent interactions up to at applied in order (step: one after a gap
// longer than the retention starts the contact over), and no Recent. It
// does not allocate.
func (p *Policy) AsOf(c *Contact, at Millis) Contact {
	v := *c
	v.Recent = nil
	for _, e := range c.Recent {
		if e.At > at {
			break
		}
		p.step(&v, e)
	}
	return v
}

// Since returns what the contact holds of events after event time at (an
// erasure's): the recent interactions after it, and ok false when none is.
// Everything the contact folded in is at or behind the watermark it was
// applied at, so for an erasure at or ahead of that watermark it is all
// from before the erasure.
func (c *Contact) Since(at Millis) (Contact, bool) {
	var v Contact
	for _, e := range c.Recent {
		if e.At > at {
			v.Recent = append(v.Recent, e)
		}
	}
	return v, len(v.Recent) > 0
}

// LateSuppression reports whether an interaction of kind at event time at,
// arriving behind the watermark, is a BLOCK or SPONSORED_OPT_OUT that a
// delivery already made would not have been made with: the business
// delivered as of a time at or after it, and no later toggle of the same
// kind is known.
func (c *Contact) LateSuppression(kind schemas.InteractionKind, at Millis) bool {
	switch kind {
	case schemas.Block:
		return c.LastSent >= at && c.BlockAt < at
	case schemas.SponsoredOptOut:
		return c.LastSent >= at && c.OptAt < at
	}
	return false
}

// changesContact reports whether an interaction of kind is one Apply can
// record: not BUSINESS_MESSAGE, not USER_ERASED.
func changesContact(kind schemas.InteractionKind) bool {
	switch kind {
	case schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick,
		schemas.Block, schemas.Unblock, schemas.SponsoredOptOut, schemas.SponsoredOptIn:
		return true
	}
	return false
}

// Apply records an interaction of kind at event time at and reports whether
// the contact changed. BUSINESS_MESSAGE changes nothing; USER_ERASED is not
// a per-contact event (the runtime deletes the user's whole state) and
// changes nothing here. Of two toggles with the same event time, the
// suppression (BLOCK, SPONSORED_OPT_OUT) wins, in whatever order they are
// applied: the arrival order within the grace must not decide.
func (c *Contact) Apply(kind schemas.InteractionKind, at Millis) bool {
	switch kind {
	case schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick:
		if at > c.Last[kind] {
			c.Last[kind] = at
			return true
		}
	case schemas.Block, schemas.Unblock:
		if at > c.BlockAt || at == c.BlockAt && (kind == schemas.Block || !c.Blocked) {
			changed := c.BlockAt != at || c.Blocked != (kind == schemas.Block)
			c.BlockAt, c.Blocked = at, kind == schemas.Block
			return changed
		}
	case schemas.SponsoredOptOut, schemas.SponsoredOptIn:
		if at > c.OptAt || at == c.OptAt && (kind == schemas.SponsoredOptOut || !c.OptedOut) {
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
	grace     Millis
}

// New returns a Policy for cfg, or the error of cfg.Validate.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Policy{cfg: cfg, retention: cfg.ContactRetention.Milliseconds(), gap: cfg.ConversationGap.Milliseconds(), grace: cfg.Grace.Milliseconds()}, nil
}

// Watermark returns the task time every rule is judged as of, given the
// task's stream time: the stream time minus the grace. A campaign fires
// once the watermark is past its send time; an interaction behind it is
// late (it can no longer count for a campaign that fired).
func (p *Policy) Watermark(streamTime Millis) Millis { return streamTime - p.grace }

// Grace returns the configured grace in Millis.
func (p *Policy) Grace() Millis { return p.grace }

// AfterFire returns the least stream time a task has once a campaign fires
// as of event time at: with a grace, 1 ms past at + grace, so that the
// watermark is past at and an interaction at or before it that is read
// later counts as late (the campaign could not count it); with none, at.
// A task raises its stream time to it as soon as a campaign starts firing,
// so that a late LAUNCH read meanwhile fires as of no earlier time (rule 4
// sees the business's deliveries in order).
func (p *Policy) AfterFire(at Millis) Millis {
	if p.grace > 0 {
		return at + p.grace + 1
	}
	return at
}

// LateAsOf returns the event time a LAUNCH that arrives after its send
// time fires as of, given the task's watermark w (Admit's now), and the
// time the expiry sweep forgets as of: with a grace, 1 ms before w, since
// an interaction at w, exactly the grace behind the stream time, may still
// come and must not be one the campaign should have counted; with none, w
// (the stream time).
func (p *Policy) LateAsOf(w Millis) Millis {
	if p.grace > 0 {
		return w - 1
	}
	return w
}

// Config returns the configuration p applies.
func (p *Policy) Config() Config { return p.cfg }

// Decide decides whether campaign camp, firing as of event time at, reaches
// the user of contact c (nil: the user has no state with the business) whose
// cross-business deliveries are r (nil when the per-user cap is off). On
// Delivered it records the delivery in c and r, so that the windows of later
// campaigns see it; a suppression changes nothing. Only the interactions of
// c at or before at count (AsOf).
func (p *Policy) Decide(c *Contact, r *Recipient, camp *Campaign, at Millis) Reason {
	if c == nil {
		return NoContact
	}
	v := p.AsOf(c, at)
	if !v.HasContact() || v.LastContact() < at-p.retention {
		return NoContact
	}
	if v.Blocked {
		return Blocked
	}
	if v.OptedOut {
		return OptedOut
	}
	if !inAudience(&v, camp.Audience, at) {
		return NotInAudience
	}
	if p.gap > 0 && v.LastContact() > at-p.gap {
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

// ExpiredBefore reports whether contact c was forgotten before an
// interaction at event time at was applied, given the task's watermark: as
// of at, or of the watermark when at is ahead of it (an interaction that
// would have renewed the contact in between may not have arrived yet).
// Taking the earlier of the two makes the outcome the same for any arrival
// order within the grace.
func (p *Policy) ExpiredBefore(c *Contact, at, watermark Millis) bool {
	return p.ContactExpired(c, min(at, watermark))
}

// Forgotten reports whether an interaction at event time at is past the
// contact retention as of now: a contact it made would be forgotten at once.
func (p *Policy) Forgotten(at, now Millis) bool { return at < now-p.retention }

// RecipientExpired reports whether r holds no delivery that a 24-hour window
// ending at or after now can count.
func (p *Policy) RecipientExpired(r *Recipient, now Millis) bool {
	return len(r.Sent) == 0 || r.Sent[len(r.Sent)-1] <= now-Day
}
