package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Feed produces a live workload until ctx ends: interactions at about rate
// per second with event time = now, and every campaignEvery a campaign
// launch sent a few seconds later. Records are keyed as the contract says
// (interactions by user, campaigns by campaign id).
func Feed(ctx context.Context, cl *kgo.Client, serde *wire.Serde, interactions, campaigns string, g *Generator, rate float64, campaignEvery time.Duration) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	nextCampaign := time.Now().Add(campaignEvery / 2)
	carry := 0.0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			carry += rate / 10
			for ; carry >= 1; carry-- {
				in := g.Interaction(now)
				v, err := serde.AppendInteraction(nil, &in)
				if err != nil {
					return fmt.Errorf("encode interaction: %w", err)
				}
				cl.Produce(ctx, &kgo.Record{Topic: interactions, Key: []byte(in.UserID), Value: v}, nil)
			}
			if now.After(nextCampaign) {
				nextCampaign = now.Add(campaignEvery)
				c := g.Campaign(now.Add(3 * time.Second))
				v, err := serde.AppendCampaign(nil, &c)
				if err != nil {
					return fmt.Errorf("encode campaign: %w", err)
				}
				cl.Produce(ctx, &kgo.Record{Topic: campaigns, Key: []byte(c.CampaignID), Value: v}, nil)
			}
		}
	}
}
