package policy_test

import (
	"encoding/hex"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

func TestContactApply(t *testing.T) {
	const t1, t2 = policy.Millis(1_000), policy.Millis(2_000)
	for _, tc := range []struct {
		name    string
		start   policy.Contact
		kind    schemas.InteractionKind
		at      policy.Millis
		changed bool
		want    policy.Contact
	}{
		{"message creates contact", policy.Contact{}, schemas.UserMessage, t1, true, policy.Contact{Last: [3]policy.Millis{t1, 0, 0}}},
		{"bot start creates contact", policy.Contact{}, schemas.BotStarted, t1, true, policy.Contact{Last: [3]policy.Millis{0, t1, 0}}},
		{"click creates contact", policy.Contact{}, schemas.BotCTAClick, t1, true, policy.Contact{Last: [3]policy.Millis{0, 0, t1}}},
		{"newer message moves last", policy.Contact{Last: [3]policy.Millis{t1}}, schemas.UserMessage, t2, true, policy.Contact{Last: [3]policy.Millis{t2}}},
		{"older message ignored", policy.Contact{Last: [3]policy.Millis{t2}}, schemas.UserMessage, t1, false, policy.Contact{Last: [3]policy.Millis{t2}}},
		{"same message ignored", policy.Contact{Last: [3]policy.Millis{t1}}, schemas.UserMessage, t1, false, policy.Contact{Last: [3]policy.Millis{t1}}},
		{"business message is no contact", policy.Contact{}, schemas.BusinessMessage, t1, false, policy.Contact{}},
		{"user erased is not per contact", policy.Contact{Last: [3]policy.Millis{t1}}, schemas.UserErased, t2, false, policy.Contact{Last: [3]policy.Millis{t1}}},
		{"unknown kind", policy.Contact{}, schemas.InteractionKind(42), t1, false, policy.Contact{}},
		{"block", policy.Contact{}, schemas.Block, t1, true, policy.Contact{Blocked: true, BlockAt: t1}},
		{"unblock newer", policy.Contact{Blocked: true, BlockAt: t1}, schemas.Unblock, t2, true, policy.Contact{BlockAt: t2}},
		{"unblock older loses", policy.Contact{Blocked: true, BlockAt: t2}, schemas.Unblock, t1, false, policy.Contact{Blocked: true, BlockAt: t2}},
		{"block older loses", policy.Contact{BlockAt: t2}, schemas.Block, t1, false, policy.Contact{BlockAt: t2}},
		{"block same time wins (read first)", policy.Contact{Blocked: true, BlockAt: t1}, schemas.Unblock, t1, false, policy.Contact{Blocked: true, BlockAt: t1}},
		{"block same time wins (read later)", policy.Contact{BlockAt: t1}, schemas.Block, t1, true, policy.Contact{Blocked: true, BlockAt: t1}},
		{"repeated block", policy.Contact{Blocked: true, BlockAt: t1}, schemas.Block, t1, false, policy.Contact{Blocked: true, BlockAt: t1}},
		{"unblock first is remembered", policy.Contact{}, schemas.Unblock, t1, true, policy.Contact{BlockAt: t1}},
		{"opt out", policy.Contact{}, schemas.SponsoredOptOut, t1, true, policy.Contact{OptedOut: true, OptAt: t1}},
		{"opt in newer", policy.Contact{OptedOut: true, OptAt: t1}, schemas.SponsoredOptIn, t2, true, policy.Contact{OptAt: t2}},
		{"opt in older loses", policy.Contact{OptedOut: true, OptAt: t2}, schemas.SponsoredOptIn, t1, false, policy.Contact{OptedOut: true, OptAt: t2}},
		{"opt out same time wins (read first)", policy.Contact{OptedOut: true, OptAt: t1}, schemas.SponsoredOptIn, t1, false, policy.Contact{OptedOut: true, OptAt: t1}},
		{"opt out same time wins (read later)", policy.Contact{OptAt: t1}, schemas.SponsoredOptOut, t1, true, policy.Contact{OptedOut: true, OptAt: t1}},
		{"toggles are independent", policy.Contact{Blocked: true, BlockAt: t1}, schemas.SponsoredOptOut, t1, true, policy.Contact{Blocked: true, BlockAt: t1, OptedOut: true, OptAt: t1}},
		{"delivery kept", policy.Contact{LastSent: t1}, schemas.UserMessage, t2, true, policy.Contact{Last: [3]policy.Millis{t2}, LastSent: t1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.start
			if got := c.Apply(tc.kind, tc.at); got != tc.changed {
				t.Errorf("Apply(%s, %d) changed = %t, want %t", tc.kind, tc.at, got, tc.changed)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("Apply(%s, %d) on %+v = %+v, want %+v", tc.kind, tc.at, tc.start, c, tc.want)
			}
		})
	}
}

func TestDeliveryID(t *testing.T) {
	// Pinned: delivery ids must never change across versions, or consumers
	// would see a replayed delivery as new. Computed independently as
	// hex(sha256(len32be(c) c len32be(u) u)[:16]).
	for _, tc := range []struct{ campaign, user, want string }{
		{"c1", "u1", "00b4f1d776a5846390596f6f1e2fadf7"},
		{"ab", "c", "f2939f903016e5bb29b1e4a61cdbd376"},
		{"a", "bc", "b534ce16ac9c8b36823f39a395ce8e0e"},
		{"", "", "af5570f5a1810b7af78caf4bc70a660f"},
	} {
		got := policy.DeliveryID(tc.campaign, tc.user)
		if got != tc.want {
			t.Errorf("DeliveryID(%q, %q) = %s, want %s", tc.campaign, tc.user, got, tc.want)
		}
		if again := policy.DeliveryID(tc.campaign, tc.user); again != got {
			t.Errorf("DeliveryID(%q, %q) not deterministic: %s then %s", tc.campaign, tc.user, got, again)
		}
		if b, err := hex.DecodeString(got); err != nil || len(got) != 32 || len(b) != 16 {
			t.Errorf("DeliveryID(%q, %q) = %q, want 32 hex chars", tc.campaign, tc.user, got)
		}
	}
	seen := map[string][2]string{}
	for _, p := range [][2]string{{"ab", "c"}, {"a", "bc"}, {"abc", ""}, {"", "abc"}, {"a", "b"}, {"b", "a"}} {
		id := policy.DeliveryID(p[0], p[1])
		if q, dup := seen[id]; dup {
			t.Errorf("DeliveryID collides for %q and %q: %s", p, q, id)
		}
		seen[id] = p
	}
}

func TestConfigValidate(t *testing.T) {
	ok := policy.DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
	if ok.ContactRetention != 365*24*time.Hour || ok.UserCap != 0 || ok.ConversationGap != 0 {
		t.Errorf("DefaultConfig() = %+v, want retention 365d, cap and gap off", ok)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*policy.Config)
		field string // "" = valid
	}{
		{"zero retention", func(c *policy.Config) { c.ContactRetention = 0 }, "ContactRetention"},
		{"negative retention", func(c *policy.Config) { c.ContactRetention = -time.Hour }, "ContactRetention"},
		{"sub-millisecond retention", func(c *policy.Config) { c.ContactRetention = time.Hour + time.Microsecond }, "ContactRetention"},
		{"negative cap", func(c *policy.Config) { c.UserCap = -1 }, "UserCap"},
		{"negative gap", func(c *policy.Config) { c.ConversationGap = -time.Second }, "ConversationGap"},
		{"sub-millisecond gap", func(c *policy.Config) { c.ConversationGap = 500 * time.Microsecond }, "ConversationGap"},
		{"cap and gap on", func(c *policy.Config) { c.UserCap, c.ConversationGap = 3, 24*time.Hour }, ""},
		{"one millisecond retention", func(c *policy.Config) { c.ContactRetention = time.Millisecond }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := policy.DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			_, newErr := policy.New(cfg)
			switch {
			case tc.field == "" && (err != nil || newErr != nil):
				t.Errorf("Validate(%+v) = %v, New: %v; want nil", cfg, err, newErr)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Errorf("Validate(%+v) = %v, want an error naming %s", cfg, err, tc.field)
			case tc.field != "" && newErr == nil:
				t.Errorf("New(%+v) accepted an invalid config", cfg)
			}
		})
	}
}

func TestNames(t *testing.T) {
	wantReasons := []string{"DELIVERED", "NO_CONTACT", "BLOCKED", "OPTED_OUT", "NOT_IN_AUDIENCE", "CONVERSATION_GAP", "FREQUENCY_BUSINESS", "FREQUENCY_USER"}
	var gotReasons []string
	for _, r := range policy.Reasons() {
		gotReasons = append(gotReasons, r.String())
	}
	if !slices.Equal(gotReasons, wantReasons) {
		t.Errorf("Reasons() = %v, want %v (the order of the rules)", gotReasons, wantReasons)
	}
	for _, tc := range []struct {
		got, want string
	}{
		{policy.Delivered.String(), "DELIVERED"},
		{policy.FrequencyUser.String(), "FREQUENCY_USER"},
		{policy.Reason(200).String(), "Reason(200)"},
		{policy.Pending.String(), "PENDING"},
		{policy.Firing.String(), "FIRING"},
		{policy.Fired.String(), "FIRED"},
		{policy.Cancelled.String(), "CANCELLED"},
		{policy.Expired.String(), "EXPIRED"},
		{policy.Status(0).String(), "UNKNOWN"},
		{policy.Status(99).String(), "UNKNOWN"},
		{policy.Accepted.String(), "ACCEPTED"},
		{policy.CancelledPending.String(), "CANCELLED_PENDING"},
		{policy.CancelledUnknown.String(), "CANCELLED_UNKNOWN"},
		{policy.Ignored.String(), "IGNORED"},
		{policy.ExpiredOnArrival.String(), "EXPIRED_ON_ARRIVAL"},
		{policy.Invalid.String(), "INVALID"},
		{policy.Verdict(0).String(), "UNKNOWN"},
		{policy.Verdict(99).String(), "UNKNOWN"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
	for s, done := range map[policy.Status]bool{policy.Pending: false, policy.Firing: false, policy.Fired: true, policy.Cancelled: true, policy.Expired: true} {
		if s.Done() != done {
			t.Errorf("%s.Done() = %t, want %t", s, s.Done(), done)
		}
	}
}

// TestSuppressionChangesNothing checks Decide's promise that only a
// delivery writes to the contact and the recipient.
func TestSuppressionChangesNothing(t *testing.T) {
	p, err := policy.New(policy.Config{ContactRetention: 365 * 24 * time.Hour, UserCap: 1, ConversationGap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const at = policy.Millis(100 * policy.Day)
	camp := &policy.Campaign{ID: "c", Business: "b", SendAt: at, ExpiresAt: at}
	for _, tc := range []struct {
		name string
		c    policy.Contact
		r    policy.Recipient
		want policy.Reason
	}{
		{"no contact", policy.Contact{BlockAt: at - 1, Blocked: true}, policy.Recipient{}, policy.NoContact},
		{"blocked", policy.Contact{Last: [3]policy.Millis{at - policy.Day}, Blocked: true, BlockAt: at - 1}, policy.Recipient{}, policy.Blocked},
		{"gap", policy.Contact{Last: [3]policy.Millis{at - 1}}, policy.Recipient{}, policy.ConversationGap},
		{"business window", policy.Contact{Last: [3]policy.Millis{at - policy.Day}, LastSent: at - 1}, policy.Recipient{}, policy.FrequencyBusiness},
		{"user cap", policy.Contact{Last: [3]policy.Millis{at - policy.Day}}, policy.Recipient{Sent: []policy.Millis{at - 2*policy.Day, at - 1}}, policy.FrequencyUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := tc.c, policy.Recipient{Sent: slices.Clone(tc.r.Sent)}
			if got := p.Decide(&c, &r, camp, at); got != tc.want {
				t.Fatalf("Decide = %s, want %s", got, tc.want)
			}
			if !reflect.DeepEqual(c, tc.c) || !slices.Equal(r.Sent, tc.r.Sent) {
				t.Errorf("suppression %s changed state: contact %+v -> %+v, sent %v -> %v", tc.want, tc.c, c, tc.r.Sent, r.Sent)
			}
		})
	}
	// A delivery records itself in both, and drops what no window counts.
	c := policy.Contact{Last: [3]policy.Millis{at - policy.Day}}
	r := policy.Recipient{Sent: []policy.Millis{at - 2*policy.Day, at - policy.Day}}
	if got := p.Decide(&c, &r, camp, at); got != policy.Delivered {
		t.Fatalf("Decide = %s, want DELIVERED", got)
	}
	if c.LastSent != at || !slices.Equal(r.Sent, []policy.Millis{at}) {
		t.Errorf("after delivery: LastSent %d, Sent %v; want %d, [%d]", c.LastSent, r.Sent, at, at)
	}
}

// TestObserveKeepsRecentOnce: interactions the grace keeps apart are kept
// once each, however often they are delivered again, also when several
// share one event time (a redelivery must not grow the contact).
func TestObserveKeepsRecentOnce(t *testing.T) {
	cfg := policy.DefaultConfig()
	cfg.Grace = time.Minute
	p, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c policy.Contact
	const at, w = 1000, 0
	for range 5 { // the same two events, redelivered five times
		p.Observe(&c, schemas.UserMessage, at, w)
		p.Observe(&c, schemas.BotCTAClick, at, w)
	}
	if len(c.Recent) != 2 {
		t.Errorf("Recent holds %d interactions after 5 deliveries of 2: %v", len(c.Recent), c.Recent)
	}
	if p.Observe(&c, schemas.Block, at, w) != true || len(c.Recent) != 3 {
		t.Errorf("a third kind at the same time is not kept: %v", c.Recent)
	}
}
