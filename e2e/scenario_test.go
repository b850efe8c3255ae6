package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// scenarioConfig sizes a seeded history.
type scenarioConfig struct {
	Seed         uint64
	Users        int
	Businesses   int
	Interactions int // main history, besides the hand-placed ones
	Campaigns    int // random launches, besides the hand-placed ones
}

// scenario is a history: campaign records in publish order, then the
// interactions in produce order (ascending, unique occurred_at).
type scenario struct {
	Campaigns    []schemas.Campaign
	Interactions []schemas.Interaction
}

// The history's time frame. Every time is in the past (so campaigns whose
// send_at follows the last interaction fire by the wall clock as of their
// send_at), and the main history spans less than the contact retention.
var (
	histStart    = time.Date(2025, 1, 20, 0, 0, 0, 0, time.UTC)
	histEnd      = time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	ancientStart = time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)
	ancientEnd   = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
)

func userID(i int) string     { return fmt.Sprintf("user-%05d", i) }
func businessID(i int) string { return fmt.Sprintf("biz-%02d", i) }

type scenarioGen struct {
	cfg   scenarioConfig
	rng   *rand.Rand
	times map[int64]bool // occurred_at values in use (ms), to keep them unique
	seq   int
	ins   []schemas.Interaction
}

func (g *scenarioGen) event(user, biz string, kind schemas.InteractionKind, at time.Time) {
	g.seq++
	g.times[at.UnixMilli()] = true
	g.ins = append(g.ins, schemas.Interaction{
		EventID: fmt.Sprintf("ev-%d-%06d", g.cfg.Seed, g.seq), UserID: user, BusinessID: biz, Kind: kind, OccurredAt: at,
	})
}

// freeTime returns a random unused millisecond in [from, to).
func (g *scenarioGen) freeTime(from, to time.Time) time.Time {
	span := to.Sub(from).Milliseconds()
	for {
		at := from.Add(time.Duration(g.rng.Int64N(span)) * time.Millisecond)
		if !g.times[at.UnixMilli()] {
			return at
		}
	}
}

// skewed picks a business index, popular ones (low index) more often.
func (g *scenarioGen) skewed() int {
	// Weight 1/(i+1): a long tail like a Zipf law, simple to reason about.
	var total float64
	for i := range g.cfg.Businesses {
		total += 1 / float64(i+1)
	}
	x := g.rng.Float64() * total
	for i := range g.cfg.Businesses {
		x -= 1 / float64(i+1)
		if x < 0 {
			return i
		}
	}
	return g.cfg.Businesses - 1
}

var kindWeights = []struct {
	kind   schemas.InteractionKind
	weight int
}{
	{schemas.UserMessage, 38},
	{schemas.BotStarted, 12},
	{schemas.BotCTAClick, 12},
	{schemas.BusinessMessage, 14},
	{schemas.Block, 6},
	{schemas.Unblock, 4},
	{schemas.SponsoredOptOut, 6},
	{schemas.SponsoredOptIn, 4},
	{schemas.UserErased, 1},
}

func (g *scenarioGen) kind() schemas.InteractionKind {
	total := 0
	for _, k := range kindWeights {
		total += k.weight
	}
	n := g.rng.IntN(total)
	for _, k := range kindWeights {
		if n < k.weight {
			return k.kind
		}
		n -= k.weight
	}
	panic("unreachable")
}

var audiences = [][]schemas.AudienceRule{
	nil, // every contact
	{{Kind: schemas.BotCTAClick, WithinDays: 7}},
	{{Kind: schemas.BotStarted, WithinDays: 30}, {Kind: schemas.BotCTAClick, WithinDays: 7}},
	{{Kind: schemas.UserMessage, WithinDays: 0}},
	{{Kind: schemas.UserMessage, WithinDays: 14}},
	{{Kind: schemas.BotStarted, WithinDays: 0}},
	nil,
}

func (g *scenarioGen) launch(id string, biz int, sendAt time.Time, audience []schemas.AudienceRule) schemas.Campaign {
	c := schemas.Campaign{
		CampaignID: id,
		BusinessID: businessID(biz),
		Action:     schemas.Launch,
		SendAt:     sendAt,
		ExpiresAt:  sendAt.Add(3 * 24 * time.Hour),
		Audience:   audience,
		Message:    schemas.Message{Text: fmt.Sprintf("%s from %s", id, businessID(biz))},
	}
	if g.rng.IntN(2) == 0 {
		label, url := "Shop now", "https://example.com/"+id
		c.Message.CTALabel, c.Message.CTAURL = &label, &url
	}
	return c
}

// newScenario generates a history that exercises every rule: contacts of
// every kind, suppressions toggled back and forth, erasures, contacts older
// than the retention, campaigns with audiences, ties on send_at, campaigns
// of one business within 24 hours (and exactly 24 hours apart), a
// cancelled campaign, a duplicate LAUNCH, interactions exactly at a send_at,
// and campaigns after the last interaction.
func newScenario(cfg scenarioConfig) scenario {
	g := &scenarioGen{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed*7919+1)), times: map[int64]bool{}}
	sec := func(t time.Time) time.Time { return t.Truncate(time.Second) }

	// Campaigns first: their send times are reserved so that the random
	// history never lands exactly on one (hand-placed events do).
	var camps []schemas.Campaign
	id := 0
	next := func() string { id++; return fmt.Sprintf("camp-%03d", id) }
	sendFrom, sendTo := histStart.Add(15*24*time.Hour), histEnd
	for range cfg.Campaigns {
		s := sec(g.freeTime(sendFrom, sendTo))
		camps = append(camps, g.launch(next(), g.skewed(), s, audiences[g.rng.IntN(len(audiences))]))
	}
	// Early campaigns: they still see the ancient contacts (within 365 days).
	early := time.Date(2025, 2, 20, 12, 0, 0, 0, time.UTC)
	camps = append(camps, g.launch(next(), 0, early, nil), g.launch(next(), 1, early.Add(time.Hour), nil))
	// Same send_at, same business: the one with the larger id meets the window.
	tie := sec(g.freeTime(sendFrom, sendTo))
	camps = append(camps, g.launch(next(), 0, tie, nil), g.launch(next(), 0, tie, []schemas.AudienceRule{{Kind: schemas.UserMessage}}))
	// Same send_at, other businesses: independent.
	camps = append(camps, g.launch(next(), 1, tie, nil), g.launch(next(), 2, tie, nil))
	// One business within 24 hours, exactly 24 hours apart, and just inside.
	w := sec(g.freeTime(sendFrom, sendTo.Add(-72*time.Hour)))
	wCamps := []schemas.Campaign{
		g.launch(next(), 1, w, nil),
		g.launch(next(), 1, w.Add(10*time.Hour), nil),
		g.launch(next(), 1, w.Add(24*time.Hour), nil),
		g.launch(next(), 1, w.Add(48*time.Hour-time.Second), nil),
	}
	camps = append(camps, wCamps...)
	// After the last interaction: fired by the wall clock.
	late := []schemas.Campaign{
		g.launch(next(), 0, histEnd.Add(24*time.Hour), nil),
		g.launch(next(), 0, histEnd.Add(36*time.Hour), nil), // within 24h of the previous
		g.launch(next(), 3, histEnd.Add(48*time.Hour), []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 30}}),
	}
	camps = append(camps, late...)
	for _, c := range camps {
		g.times[c.SendAt.UnixMilli()] = true
	}
	// A cancelled one, a cancel of a campaign that never existed, and a
	// duplicate LAUNCH (fires once).
	cancelled := g.launch(next(), 0, sec(g.freeTime(sendFrom, sendTo)), nil)
	camps = append(camps, cancelled)
	g.times[cancelled.SendAt.UnixMilli()] = true
	records := slices.Clone(camps)
	records = append(records,
		schemas.Campaign{CampaignID: cancelled.CampaignID, BusinessID: cancelled.BusinessID, Action: schemas.Cancel, SendAt: cancelled.SendAt, ExpiresAt: cancelled.ExpiresAt},
		schemas.Campaign{CampaignID: "camp-never", BusinessID: businessID(0), Action: schemas.Cancel, SendAt: tie, ExpiresAt: tie},
		camps[0], // a duplicate LAUNCH
	)

	// Users and the businesses each one talks to.
	talks := make([][]int, cfg.Users)
	for u := range talks {
		n := 1 + g.rng.IntN(3)
		for len(talks[u]) < n {
			b := g.skewed()
			if !slices.Contains(talks[u], b) {
				talks[u] = append(talks[u], b)
			}
		}
	}
	// The main history.
	for range cfg.Interactions {
		u := g.rng.IntN(cfg.Users)
		k := g.kind()
		at := g.freeTime(histStart, histEnd)
		if k == schemas.UserErased {
			g.event(userID(u), "", k, at)
			continue
		}
		b := talks[u][g.rng.IntN(len(talks[u]))]
		g.event(userID(u), businessID(b), k, at)
	}
	// Ancient contacts: pairs the main history never uses, older than the
	// retention for most campaigns, but not for the early ones.
	for range max(cfg.Interactions/30, 10) {
		u := g.rng.IntN(cfg.Users)
		b := g.rng.IntN(cfg.Businesses)
		if slices.Contains(talks[u], b) {
			continue
		}
		k := []schemas.InteractionKind{schemas.UserMessage, schemas.BotStarted, schemas.BotCTAClick}[g.rng.IntN(3)]
		g.event(userID(u), businessID(b), k, g.freeTime(ancientStart, ancientEnd))
	}
	// Hand-placed: for each tie and window campaign, a new user whose first
	// interaction is exactly at send_at (counts: before the firing) and one
	// 1ms after (does not count for that campaign).
	extra := 0
	special := func() string { extra++; return fmt.Sprintf("user-x%04d", extra) }
	for _, c := range append(append([]schemas.Campaign{camps[cfg.Campaigns+2]}, wCamps...), camps[:min(5, cfg.Campaigns)]...) {
		g.event(special(), c.BusinessID, schemas.UserMessage, c.SendAt)
		g.event(special(), c.BusinessID, schemas.UserMessage, c.SendAt.Add(time.Millisecond))
	}
	// Erasure between two campaigns of one business within 24 hours: the
	// window is forgotten with everything else.
	{
		u, b := special(), wCamps[0].BusinessID
		g.event(u, b, schemas.UserMessage, wCamps[0].SendAt.Add(-time.Hour))
		g.event(u, "", schemas.UserErased, wCamps[0].SendAt.Add(time.Hour))
		g.event(u, b, schemas.BotStarted, wCamps[0].SendAt.Add(2*time.Hour))
	}
	// A block, an opt-out and their reversals right around a send_at.
	{
		c := wCamps[1]
		u1, u2 := special(), special()
		g.event(u1, c.BusinessID, schemas.UserMessage, c.SendAt.Add(-5*time.Hour))
		g.event(u1, c.BusinessID, schemas.Block, c.SendAt.Add(-time.Hour))
		g.event(u1, c.BusinessID, schemas.Unblock, c.SendAt.Add(-30*time.Minute))
		g.event(u2, c.BusinessID, schemas.BotCTAClick, c.SendAt.Add(-5*time.Hour))
		g.event(u2, c.BusinessID, schemas.SponsoredOptOut, c.SendAt)
		g.event(u2, c.BusinessID, schemas.SponsoredOptIn, c.SendAt.Add(time.Millisecond))
	}
	// A business message alone creates no contact.
	g.event(special(), businessID(0), schemas.BusinessMessage, histStart.Add(time.Hour))

	slices.SortFunc(g.ins, func(a, b schemas.Interaction) int { return a.OccurredAt.Compare(b.OccurredAt) })
	return scenario{Campaigns: records, Interactions: g.ins}
}
