package e2e

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// This file is the test's oracle: it derives the expected inbox from the
// rules of DESIGN.md, without calling policy's Decide. It assumes
// the scenario shape that makes the rules exact and timing-free:
//
//   - every campaign record is published before any interaction, so a
//     CANCEL always precedes its campaign's firing;
//   - interactions are produced in ascending occurred_at order (unique
//     times), so each campaign fires as of its send_at, seeing exactly the
//     interactions with occurred_at <= send_at, whether it fires by stream
//     time or, after the last interaction of its partition, by the wall
//     clock (every send_at is in the past);
//   - no (user, business) pair has a gap of more than the contact retention
//     between two of its events, so forgetting a contact only ever makes it
//     a stranger for good (what the expiry sweep does cannot matter).

// delivery is one expected (or received) inbox record.
type delivery struct {
	Campaign string
	User     string
	Business string
	SentAt   time.Time
}

func (d delivery) key() pairKey { return pairKey{d.Campaign, d.User} }

func (d delivery) String() string {
	return fmt.Sprintf("%s->%s (%s @%s)", d.Campaign, d.User, d.Business, d.SentAt.UTC().Format(time.RFC3339Nano))
}

type pairKey struct{ Campaign, User string }

// oracleConfig is the part of the rules the scenarios configure.
type oracleConfig struct {
	Retention time.Duration // contact retention; DESIGN's default 365 days
}

var defaultOracle = oracleConfig{Retention: 365 * 24 * time.Hour}

// firingCampaigns returns the LAUNCHes that fire: the first LAUNCH of each
// id, valid (expires_at >= send_at), with no CANCEL of that id anywhere in
// the records (they all precede every interaction, hence every firing).
func firingCampaigns(recs []schemas.Campaign) []schemas.Campaign {
	cancelled := map[string]bool{}
	for _, c := range recs {
		if c.Action == schemas.Cancel {
			cancelled[c.CampaignID] = true
		}
	}
	seen := map[string]bool{}
	var out []schemas.Campaign
	for _, c := range recs {
		if c.Action != schemas.Launch || seen[c.CampaignID] {
			continue
		}
		seen[c.CampaignID] = true
		if cancelled[c.CampaignID] || c.ExpiresAt.Before(c.SendAt) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// expectedDeliveries applies the rules to a scenario: the interactions in
// produce order (ascending occurred_at) and the campaign records in publish
// order. It returns the deliveries keyed by (campaign, user).
// It also tallies the outcome of every (campaign, contact) candidate by the
// first failing rule, to show which rules the scenario exercises.
func expectedDeliveries(ins []schemas.Interaction, camps []schemas.Campaign, cfg oracleConfig) (map[pairKey]delivery, map[string]int) {
	out, tally, _ := oracleRun(ins, camps, cfg, false)
	return out, tally
}

// oracleOutcomes returns the oracle's outcome of every (campaign, user) pair
// of users who ever interacted, strangers included: what compareDecisions
// checks the decisions topic against.
func oracleOutcomes(ins []schemas.Interaction, camps []schemas.Campaign, cfg oracleConfig) map[pairKey]string {
	_, _, outcomes := oracleRun(ins, camps, cfg, true)
	return outcomes
}

func oracleRun(ins []schemas.Interaction, camps []schemas.Campaign, cfg oracleConfig, keep bool) (map[pairKey]delivery, map[string]int, map[pairKey]string) {
	byUser := map[string][]schemas.Interaction{}
	for _, in := range ins {
		byUser[in.UserID] = append(byUser[in.UserID], in)
	}
	users := make([]string, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	slices.Sort(users)

	fire := firingCampaigns(camps)
	// Campaigns of one business are considered in (send_at, campaign_id)
	// order; different businesses do not interact (no per-user cap).
	slices.SortStableFunc(fire, func(a, b schemas.Campaign) int {
		if c := a.SendAt.Compare(b.SendAt); c != 0 {
			return c
		}
		return cmp.Compare(a.CampaignID, b.CampaignID)
	})

	out := map[pairKey]delivery{}
	tally := map[string]int{}
	var outcomes map[pairKey]string
	if keep {
		outcomes = map[pairKey]string{}
	}
	// sent[user][business] are the deliveries of business to user so far,
	// ascending.
	sent := map[string]map[string][]time.Time{}
	for _, c := range fire {
		for _, u := range users {
			why := decide(byUser[u], c, sent[u][c.BusinessID], cfg)
			tally[why]++
			if keep {
				outcomes[pairKey{c.CampaignID, u}] = why
			}
			if why != outDelivered && why != outErasedReset {
				continue
			}
			out[pairKey{c.CampaignID, u}] = delivery{Campaign: c.CampaignID, User: u, Business: c.BusinessID, SentAt: c.SendAt}
			if sent[u] == nil {
				sent[u] = map[string][]time.Time{}
			}
			sent[u][c.BusinessID] = append(sent[u][c.BusinessID], c.SendAt)
		}
	}
	return out, tally, outcomes
}

// The outcomes of decide: delivered, or the first rule that failed.
const (
	outDelivered   = "delivered"
	outStranger    = "no-contact"          // never a user-initiated interaction (since the last erasure)
	outRetention   = "no-contact-retained" // the last one is older than the retention
	outBlocked     = "blocked"
	outOptedOut    = "opted-out"
	outAudience    = "not-in-audience"
	outWindow      = "frequency-business"
	outErasedReset = "window-forgotten-by-erasure" // delivered, though a delivery within 24h preceded an erasure
)

// decide decides one (campaign, user) pair from the user's interactions
// (ascending) and the business's earlier deliveries to the user (ascending,
// all at or before the campaign's send time).
//
// It models what the rules forget (DESIGN: a contact with no event for
// longer than the contact retention is forgotten, and its state expires):
// walking the history in event time, an interaction with the business finds
// the contact forgotten, and starts from nothing, when its last event
// (user-initiated interaction, block or opt-out toggle, delivery) is older
// than the retention and no delivery is within 24 hours; the same test at
// the send time makes the user no candidate. An erasure forgets everything,
// deliveries included. An interaction at a delivery's own time counts as
// before it.
func decide(hist []schemas.Interaction, c schemas.Campaign, sent []time.Time, cfg oracleConfig) string {
	s := c.SendAt
	var (
		last      [3]time.Time // latest of each user-initiated kind, zero = never
		blocked   bool
		optedOut  bool
		toggleAt  time.Time // latest block/unblock or opt-out/opt-in
		lastSent  time.Time // latest delivery the contact remembers
		erasedAt  time.Time
		hasErased bool
	)
	lastEvent := func() time.Time {
		t := lastSent
		for _, x := range append(last[:], toggleAt) {
			if x.After(t) {
				t = x
			}
		}
		return t
	}
	forgotten := func(now time.Time) bool {
		return lastEvent().Before(now.Add(-cfg.Retention)) && !lastSent.After(now.Add(-24*time.Hour))
	}
	reset := func() {
		last, blocked, optedOut, toggleAt, lastSent = [3]time.Time{}, false, false, time.Time{}, time.Time{}
	}
	next := 0 // the next delivery of sent to apply
	deliveriesBefore := func(t time.Time, inclusive bool) {
		for next < len(sent) && (sent[next].Before(t) || inclusive && sent[next].Equal(t)) {
			lastSent = sent[next]
			next++
		}
	}
	for _, in := range hist {
		if in.OccurredAt.After(s) { // an interaction exactly at send_at counts as before
			break
		}
		deliveriesBefore(in.OccurredAt, false)
		if in.Kind == schemas.UserErased {
			// Everything known about the user is gone: a stranger again.
			reset()
			erasedAt, hasErased = in.OccurredAt, true
			continue
		}
		if in.BusinessID != c.BusinessID || in.Kind == schemas.BusinessMessage {
			continue
		}
		if forgotten(in.OccurredAt) {
			reset()
		}
		switch in.Kind {
		case schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick:
			last[in.Kind] = in.OccurredAt
		case schemas.Block:
			blocked, toggleAt = true, in.OccurredAt
		case schemas.Unblock:
			blocked, toggleAt = false, in.OccurredAt
		case schemas.SponsoredOptOut:
			optedOut, toggleAt = true, in.OccurredAt
		case schemas.SponsoredOptIn:
			optedOut, toggleAt = false, in.OccurredAt
		}
	}
	deliveriesBefore(s, true)
	// 1. contact, not forgotten.
	var lastContact time.Time
	for _, t := range last {
		if t.After(lastContact) {
			lastContact = t
		}
	}
	if lastContact.IsZero() {
		return outStranger
	}
	if forgotten(s) || lastContact.Before(s.Add(-cfg.Retention)) {
		return outRetention
	}
	// 2. not suppressed.
	if blocked {
		return outBlocked
	}
	if optedOut {
		return outOptedOut
	}
	// 3. audience.
	if len(c.Audience) > 0 {
		in := false
		for _, r := range c.Audience {
			t := last[r.Kind]
			if t.IsZero() {
				continue
			}
			if r.WithinDays == 0 || !t.Before(s.Add(-time.Duration(r.WithinDays)*24*time.Hour)) {
				in = true
				break
			}
		}
		if !in {
			return outAudience
		}
	}
	// 4. the 24-hour window: a delivery in (s-24h, s] blocks; an erasure
	// forgets deliveries made before it (one at the erasure's own time was
	// made after it: the interaction counts as before the firing).
	inWindow := func(t time.Time) bool { return !t.IsZero() && t.After(s.Add(-24*time.Hour)) && !t.After(s) }
	if inWindow(lastSent) {
		return outWindow
	}
	if len(sent) > 0 && inWindow(sent[len(sent)-1]) && hasErased && sent[len(sent)-1].Before(erasedAt) {
		return outErasedReset // delivered: the erasure forgot the delivery in the window
	}
	return outDelivered
}
