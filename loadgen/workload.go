package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// Workload shapes a synthetic workload.
type Workload struct {
	Seed       uint64
	Users      int // distinct users; default 10000
	Businesses int // distinct businesses; default 200
	// Zipf skew of business popularity (> 1); default 1.3.
	Skew float64
}

// Generator produces interactions and campaigns. Not safe for concurrent use.
type Generator struct {
	cfg  Workload
	rng  *rand.Rand
	zipf *rand.Zipf
	seq  int
	camp int
}

// NewGenerator returns a Generator of workload cfg. Two generators of the
// same cfg produce the same sequence of records.
func NewGenerator(cfg Workload) *Generator {
	if cfg.Users <= 0 {
		cfg.Users = 10000
	}
	if cfg.Businesses <= 0 {
		cfg.Businesses = 200
	}
	if cfg.Skew <= 1 {
		cfg.Skew = 1.3
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	return &Generator{cfg: cfg, rng: rng, zipf: rand.NewZipf(rng, cfg.Skew, 1, uint64(cfg.Businesses-1))}
}

// User returns the id of user i.
func User(i int) string { return fmt.Sprintf("user-%06d", i) }

// Business returns the id of business i.
func Business(i int) string { return fmt.Sprintf("biz-%04d", i) }

// kinds is the interaction mix, by weight.
var kinds = []struct {
	kind   schemas.InteractionKind
	weight int
}{
	{schemas.UserMessage, 50},
	{schemas.BusinessMessage, 25},
	{schemas.BotStarted, 10},
	{schemas.BotCTAClick, 8},
	{schemas.Block, 2},
	{schemas.Unblock, 1},
	{schemas.SponsoredOptOut, 2},
	{schemas.SponsoredOptIn, 1},
}

func (g *Generator) kind() schemas.InteractionKind {
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	n := g.rng.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			return k.kind
		}
		n -= k.weight
	}
	return schemas.UserMessage
}

// Interaction returns the next interaction, as of event time at. One in
// 20000 is an erasure.
func (g *Generator) Interaction(at time.Time) schemas.Interaction {
	g.seq++
	u := User(g.rng.IntN(g.cfg.Users))
	in := schemas.Interaction{EventID: fmt.Sprintf("ev-%d-%d", g.cfg.Seed, g.seq), UserID: u, OccurredAt: at.Truncate(time.Millisecond)}
	if g.rng.IntN(20000) == 0 {
		in.Kind = schemas.UserErased
		return in
	}
	in.BusinessID = Business(int(g.zipf.Uint64()))
	in.Kind = g.kind()
	return in
}

// Campaign returns a new campaign launch from a popular business, sent at
// sendAt and expiring a day later, with a random audience.
func (g *Generator) Campaign(sendAt time.Time) schemas.Campaign {
	g.camp++
	biz := int(g.zipf.Uint64())
	c := schemas.Campaign{
		CampaignID: fmt.Sprintf("camp-%d-%d", g.cfg.Seed, g.camp),
		BusinessID: Business(biz),
		Action:     schemas.Launch,
		SendAt:     sendAt.Truncate(time.Millisecond),
		ExpiresAt:  sendAt.Add(24 * time.Hour).Truncate(time.Millisecond),
		Message:    schemas.Message{Text: fmt.Sprintf("Hello from %s: %d%% off this week", Business(biz), 5*(1+g.rng.IntN(8)))},
	}
	switch g.rng.IntN(4) {
	case 0: // everyone
	case 1:
		c.Audience = []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 7}}
	case 2:
		c.Audience = []schemas.AudienceRule{{Kind: schemas.BotStarted, WithinDays: 30}, {Kind: schemas.BotCTAClick, WithinDays: 7}}
	default:
		c.Audience = []schemas.AudienceRule{{Kind: schemas.UserMessage, WithinDays: 0}}
	}
	if g.rng.IntN(2) == 0 {
		label, url := "Shop now", "https://example.com/"+c.BusinessID
		c.Message.CTALabel, c.Message.CTAURL = &label, &url
	}
	return c
}

// Poisson returns an exponentially distributed gap with the given rate per
// second, for arrivals that look like real traffic.
func (g *Generator) Poisson(perSecond float64) time.Duration {
	return time.Duration(-math.Log(1-g.rng.Float64()) / perSecond * float64(time.Second))
}
