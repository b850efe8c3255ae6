package schemas

import "time"

// InteractionKind is what a user (or a business) did in a conversation.
type InteractionKind int8

// The interaction kinds, in the order of the Avro enum's symbols.
const (
	UserMessage     InteractionKind = iota // USER_MESSAGE: the user wrote to the business (user-initiated)
	BotStarted                             // BOT_STARTED: the user started the business's bot (user-initiated)
	BotCTAClick                            // BOT_CTA_CLICK: the user clicked the bot's call button (user-initiated)
	BusinessMessage                        // BUSINESS_MESSAGE: the business wrote to the user (creates no contact)
	Block                                  // BLOCK: the user blocked the business
	Unblock                                // UNBLOCK: the user unblocked the business
	SponsoredOptOut                        // SPONSORED_OPT_OUT: the user turned the business's sponsored messages off
	SponsoredOptIn                         // SPONSORED_OPT_IN: the user turned them back on
	UserErased                             // USER_ERASED: forget everything about the user (business_id empty)
)

// InteractionKinds lists the Avro enum symbols, indexed by InteractionKind.
var InteractionKinds = [...]string{
	"USER_MESSAGE", "BOT_STARTED", "BOT_CTA_CLICK", "BUSINESS_MESSAGE",
	"BLOCK", "UNBLOCK", "SPONSORED_OPT_OUT", "SPONSORED_OPT_IN", "USER_ERASED",
}

// String returns the Avro symbol of k.
func (k InteractionKind) String() string {
	if k < 0 || int(k) >= len(InteractionKinds) {
		return "UNKNOWN"
	}
	return InteractionKinds[k]
}

// UserInitiated reports whether k creates contact with the business.
func (k InteractionKind) UserInitiated() bool { return k <= BotCTAClick && k >= UserMessage }

// ParseInteractionKind returns the kind named by an Avro symbol.
func ParseInteractionKind(s string) (InteractionKind, bool) {
	for i, name := range InteractionKinds {
		if name == s {
			return InteractionKind(i), true
		}
	}
	return 0, false
}

// Interaction is one record of the interactions topic, keyed by UserID.
type Interaction struct {
	EventID    string
	UserID     string
	BusinessID string // empty for UserErased
	Kind       InteractionKind
	OccurredAt time.Time // event time, millisecond precision
}

// CampaignAction says whether a campaign record launches or cancels a campaign.
type CampaignAction int8

// The campaign actions, in the order of the Avro enum's symbols.
const (
	Launch CampaignAction = iota // LAUNCH
	Cancel                       // CANCEL
)

// String returns the Avro symbol of a.
func (a CampaignAction) String() string {
	switch a {
	case Launch:
		return "LAUNCH"
	case Cancel:
		return "CANCEL"
	}
	return "UNKNOWN"
}

// AudienceRule selects the contacts who had an interaction of Kind (one of
// the three user-initiated kinds) with the business within WithinDays days
// before the campaign's send time; WithinDays 0 means ever.
type AudienceRule struct {
	Kind       InteractionKind
	WithinDays int32
}

// Message is what the user sees in the inbox.
type Message struct {
	Text     string
	CTALabel *string // optional call-to-action button label
	CTAURL   *string // optional call-to-action URL
}

// Campaign is one record of the campaigns topic, keyed by CampaignID.
type Campaign struct {
	CampaignID string
	BusinessID string
	Action     CampaignAction
	SendAt     time.Time
	ExpiresAt  time.Time
	Audience   []AudienceRule // empty: every contact of the business
	Message    Message
}

// InboxMessage is one record of the inbox topic, keyed by UserID: a
// sponsored message delivered to a user, exactly once per (campaign, user).
type InboxMessage struct {
	DeliveryID string // deterministic function of (CampaignID, UserID)
	UserID     string
	BusinessID string
	CampaignID string
	SentAt     time.Time // the send_at the campaign fired as of
	Message    Message
}

// Outcome is what the rules decided about one (campaign, user) candidate:
// Delivered, or the first rule that failed. The values are the Avro enum's
// ordinals, in the order the rules are checked (the policy's Reason order).
type Outcome int8

// The outcomes, in the order of the Avro enum's symbols.
const (
	Delivered         Outcome = iota // DELIVERED: the message went to the inbox
	NoContact                        // NO_CONTACT: no user-initiated interaction with the business by send_at
	Blocked                          // BLOCKED: the user blocks the business
	OptedOut                         // OPTED_OUT: the user turned the business's sponsored messages off
	NotInAudience                    // NOT_IN_AUDIENCE: no audience rule matched
	ConversationGap                  // CONVERSATION_GAP: the user wrote to the business too recently
	FrequencyBusiness                // FREQUENCY_BUSINESS: the business already sent one in the last 24 hours
	FrequencyUser                    // FREQUENCY_USER: the per-user cap across businesses was reached
)

// Outcomes lists the Avro enum symbols, indexed by Outcome.
var Outcomes = [...]string{
	"DELIVERED", "NO_CONTACT", "BLOCKED", "OPTED_OUT", "NOT_IN_AUDIENCE",
	"CONVERSATION_GAP", "FREQUENCY_BUSINESS", "FREQUENCY_USER",
}

// String returns the Avro symbol of o.
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(Outcomes) {
		return "UNKNOWN"
	}
	return Outcomes[o]
}

// ParseOutcome returns the outcome named by an Avro symbol.
func ParseOutcome(s string) (Outcome, bool) {
	for i, name := range Outcomes {
		if name == s {
			return Outcome(i), true
		}
	}
	return 0, false
}

// Decision is one record of the decisions topic, keyed by UserID: the audit
// trail of a (campaign, user) candidate, written exactly once, in the same
// transaction as the inbox record it may come with.
type Decision struct {
	DeliveryID  string // deterministic function of (CampaignID, UserID)
	UserID      string
	BusinessID  string
	CampaignID  string
	Outcome     Outcome
	DecidedAsOf time.Time // the send_at the campaign fired as of
}

// DecisionChunk is the chunk form of a decisions record (key: CampaignID):
// the decisions of one chunk of a campaign's fan-out on one partition, one
// record for all its candidates. Users[i] got Outcomes[i]; each candidate's
// delivery id is DeliveryID(CampaignID, Users[i]). [DecisionChunk.Decisions]
// gives the same decisions in the per-candidate form.
type DecisionChunk struct {
	BusinessID  string
	CampaignID  string
	DecidedAsOf time.Time // the send_at the campaign fired as of
	Partition   int32     // the partition of the chunk's users
	// After is the fan-out's cursor when the chunk began (the last user the
	// previous chunk went over), empty for the first chunk.
	After string
	// Done reports that the chunk finished the campaign's fan-out on the
	// partition.
	Done     bool
	Users    []string // ascending
	Outcomes []Outcome
}

// Decisions appends the chunk's decisions, in the per-candidate form with
// their delivery ids, to dst and returns the extended slice.
func (c *DecisionChunk) Decisions(dst []Decision) []Decision {
	for i, u := range c.Users {
		d := Decision{DeliveryID: DeliveryID(c.CampaignID, u), UserID: u, BusinessID: c.BusinessID, CampaignID: c.CampaignID, DecidedAsOf: c.DecidedAsOf}
		if i < len(c.Outcomes) {
			d.Outcome = c.Outcomes[i]
		}
		dst = append(dst, d)
	}
	return dst
}
