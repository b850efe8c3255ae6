package loadgen

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// startStack starts the embedded Kafka and registry with the pipeline's
// topics (3 partitions) and returns a Target for them.
func startStack(t *testing.T) (Target, *wire.Serde) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stack, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatalf("start embedded stack: %v", err)
	}
	t.Cleanup(func() { stack.Close() })
	names := topics.NewNames("", "test")
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := (topics.Catalog{Names: names, Partitions: 3, ReplicationFactor: -1}).Ensure(ctx, kadm.NewClient(cl), true); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	return Target{Brokers: stack.Brokers, Registry: stack.RegistryURL, Topics: names}, serde
}

// readCommitted returns every record of topic visible to a read_committed
// consumer, reading up to the topic's last stable offsets.
func readCommitted(t *testing.T, tg Target, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	if err := kafkaconn.ReadCommitted(ctx, []kgo.Opt{kgo.SeedBrokers(tg.Brokers...)}, topic, nil, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// TestProduce writes interactions and campaigns in one call and reads them
// back with read_committed: exactly those records, keyed by user and by
// campaign, decoding to what was given.
func TestProduce(t *testing.T) {
	tg, serde := startStack(t)
	ctx := context.Background()
	label, url := "Shop", "https://example.com"
	ins := []schemas.Interaction{
		{EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: t0},
		{EventID: "e2", UserID: "u2", BusinessID: "b1", Kind: schemas.BotCTAClick, OccurredAt: t0.Add(time.Minute)},
		{EventID: "e3", UserID: "u1", Kind: schemas.UserErased, OccurredAt: t0.Add(time.Hour)},
	}
	camps := []schemas.Campaign{
		{CampaignID: "c1", BusinessID: "b1", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0.Add(time.Hour),
			Audience: []schemas.AudienceRule{{Kind: schemas.BotCTAClick, WithinDays: 7}}, Message: schemas.Message{Text: "hi", CTALabel: &label, CTAURL: &url}},
		{CampaignID: "c1", BusinessID: "b1", Action: schemas.Cancel, SendAt: t0, ExpiresAt: t0.Add(time.Hour), Message: schemas.Message{Text: "hi"}},
	}
	n, err := Produce(ctx, tg, ins, camps)
	if err != nil || n != 5 {
		t.Fatalf("Produce = %d, %v; want 5, nil", n, err)
	}

	// One transaction: every record transactional, all from one producer
	// id and epoch.
	inRecs, campRecs := readCommitted(t, tg, tg.Topics.Interactions), readCommitted(t, tg, tg.Topics.Campaigns)
	for _, r := range append(append([]*kgo.Record(nil), inRecs...), campRecs...) {
		if !r.Attrs.IsTransactional() || r.ProducerID != inRecs[0].ProducerID || r.ProducerEpoch != inRecs[0].ProducerEpoch {
			t.Errorf("%s/%d@%d: transactional %v, producer %d/%d; want all transactional from producer %d/%d",
				r.Topic, r.Partition, r.Offset, r.Attrs.IsTransactional(), r.ProducerID, r.ProducerEpoch, inRecs[0].ProducerID, inRecs[0].ProducerEpoch)
		}
	}

	got := map[string]schemas.Interaction{}
	for _, r := range inRecs {
		v, err := serde.DecodeInteraction(r.Value)
		if err != nil {
			t.Fatalf("decode interaction at offset %d: %v", r.Offset, err)
		}
		if string(r.Key) != v.UserID {
			t.Errorf("interaction %s keyed %q, want its user %q", v.EventID, r.Key, v.UserID)
		}
		got[v.EventID] = v
	}
	if len(got) != len(ins) {
		t.Errorf("read %d interactions, want %d", len(got), len(ins))
	}
	for _, want := range ins {
		if !reflect.DeepEqual(got[want.EventID], want) {
			t.Errorf("interaction %s: got %+v, want %+v", want.EventID, got[want.EventID], want)
		}
	}
	// Campaigns has one partition: order is kept.
	recs := campRecs
	if len(recs) != len(camps) {
		t.Fatalf("read %d campaigns, want %d", len(recs), len(camps))
	}
	for i, r := range recs {
		v, err := serde.DecodeCampaign(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != v.CampaignID {
			t.Errorf("campaign keyed %q, want %q", r.Key, v.CampaignID)
		}
		if !reflect.DeepEqual(v, camps[i]) {
			t.Errorf("campaign %d: got %+v, want %+v", i, v, camps[i])
		}
	}
}

// TestProduceWritesNothingOnError checks the refusals that happen before
// anything is written: a missing topic, and a value the serde refuses in the
// middle of a batch.
func TestProduceWritesNothingOnError(t *testing.T) {
	tg, _ := startStack(t)
	ctx := context.Background()
	good := schemas.Interaction{EventID: "e1", UserID: "u1", BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: t0}

	missing := tg
	missing.Topics = topics.NewNames("nope-", "")
	if _, err := Produce(ctx, missing, []schemas.Interaction{good}, nil); err == nil || !strings.Contains(err.Error(), `topic "nope-interactions" does not exist`) {
		t.Errorf("Produce to a missing topic: %v, want topic ... does not exist", err)
	}

	bad := schemas.Campaign{CampaignID: "c", BusinessID: "b", SendAt: t0, ExpiresAt: t0, Audience: []schemas.AudienceRule{{Kind: schemas.Block}}}
	if _, err := Produce(ctx, tg, []schemas.Interaction{good}, []schemas.Campaign{bad}); err == nil || !strings.Contains(err.Error(), "not user-initiated") {
		t.Errorf("Produce with an unencodable campaign: %v, want an encode error", err)
	}
	if recs := readCommitted(t, tg, tg.Topics.Interactions); len(recs) != 0 {
		t.Errorf("after failed Produce calls, interactions has %d records, want 0", len(recs))
	}
}

// TestGenCount checks that gen --count N writes exactly N interactions,
// reports progress ending with Done, and launches campaigns sent 3s ahead.
func TestGenCount(t *testing.T) {
	tg, serde := startStack(t)
	var reports []Progress
	p, err := Gen(context.Background(), tg, GenConfig{
		Workload: Workload{Seed: 7, Users: 50, Businesses: 5},
		Count:    2500, CampaignEvery: time.Millisecond,
		Progress: func(p Progress) { reports = append(reports, p) }, ProgressEvery: time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Gen: %v", err)
	}
	if p.Interactions != 2500 || p.Total != 2500 {
		t.Errorf("Gen progress = %+v, want 2500 of 2500 interactions", p)
	}
	if p.Campaigns == 0 {
		t.Errorf("Gen with CampaignEvery 1ms wrote no campaign")
	}
	if len(reports) == 0 || !reports[len(reports)-1].Done || reports[len(reports)-1].Interactions != 2500 {
		t.Errorf("last progress report %+v, want Done with 2500 interactions", reports[len(reports)-1:])
	}
	recs := readCommitted(t, tg, tg.Topics.Interactions)
	if len(recs) != 2500 {
		t.Fatalf("interactions topic holds %d records, want 2500", len(recs))
	}
	// They are the generator's (event ids ev-SEED-1 to ev-SEED-N, each
	// once), keyed by user, with event time about now.
	seen := map[string]bool{}
	for _, r := range recs {
		v, err := serde.DecodeInteraction(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		var seq int
		if _, err := fmt.Sscanf(v.EventID, "ev-7-%d", &seq); err != nil || seq < 1 || seq > 2500 || seen[v.EventID] {
			t.Fatalf("event id %q is not one of ev-7-1 to ev-7-2500 once", v.EventID)
		}
		seen[v.EventID] = true
		if string(r.Key) != v.UserID {
			t.Fatalf("interaction %s keyed %q, want its user %q", v.EventID, r.Key, v.UserID)
		}
		if time.Since(v.OccurredAt) > time.Minute {
			t.Fatalf("event time %v is not now", v.OccurredAt)
		}
	}
	camps := readCommitted(t, tg, tg.Topics.Campaigns)
	if int64(len(camps)) != p.Campaigns {
		t.Errorf("campaigns topic holds %d records, Gen reported %d", len(camps), p.Campaigns)
	}
	for _, r := range camps {
		c, err := serde.DecodeCampaign(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if lead := c.SendAt.Sub(r.Timestamp); lead < 2*time.Second || lead > 4*time.Second {
			t.Errorf("campaign %s send_at is %v after it was written, want about 3s", c.CampaignID, lead)
		}
	}
}

// TestGenRate checks that a rate and a duration bound the run.
func TestGenRate(t *testing.T) {
	tg, _ := startStack(t)
	start := time.Now()
	p, err := Gen(context.Background(), tg, GenConfig{Workload: Workload{Seed: 1}, Rate: 200, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Gen: %v", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("Gen took %v, want at least the duration 500ms", took)
	}
	if p.Interactions < 1 || p.Interactions > 101 || p.Campaigns != 0 {
		t.Errorf("Gen at 200/s for 500ms wrote %d interactions and %d campaigns, want at most 101 and none", p.Interactions, p.Campaigns)
	}
	if n := len(readCommitted(t, tg, tg.Topics.Interactions)); int64(n) != p.Interactions {
		t.Errorf("topic holds %d interactions, Gen reported %d", n, p.Interactions)
	}
}

// TestFeedPartitioner: Produce and Gen put every interaction on the
// partition Target.Partitioner gives its key, the one the pipeline checks,
// under both partitioners.
func TestFeedPartitioner(t *testing.T) {
	for _, part := range topics.Partitioners() {
		t.Run(string(part), func(t *testing.T) {
			tg, _ := startStack(t)
			tg.Partitioner = part
			var ins []schemas.Interaction
			for i := range 200 {
				ins = append(ins, schemas.Interaction{EventID: fmt.Sprint(i), UserID: fmt.Sprintf("user-%d", i), BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: t0})
			}
			if _, err := Produce(context.Background(), tg, ins, nil); err != nil {
				t.Fatalf("Produce: %v", err)
			}
			if _, err := Gen(context.Background(), tg, GenConfig{Workload: Workload{Seed: 3, Users: 300, Businesses: 5}, Count: 500}); err != nil {
				t.Fatalf("Gen: %v", err)
			}
			recs := readCommitted(t, tg, tg.Topics.Interactions)
			if len(recs) != 700 {
				t.Fatalf("interactions topic holds %d records, want 700", len(recs))
			}
			for _, r := range recs {
				if want := part.Partition(r.Key, 3); r.Partition != want {
					t.Fatalf("interaction keyed %q is on partition %d, the %s partitioner says %d", r.Key, r.Partition, part, want)
				}
			}
		})
	}
	tg, _ := startStack(t)
	tg.Partitioner = "consistent"
	if _, err := Produce(context.Background(), tg, []schemas.Interaction{{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.UserMessage, OccurredAt: t0}}, nil); err == nil || !strings.Contains(err.Error(), `"consistent"`) {
		t.Errorf("Produce with an unknown partitioner: %v, want an error naming it", err)
	}
}

// TestWorkloadDeterministic pins the workload: tests and benchmarks rely on
// the same seed giving the same records, across releases too.
func TestWorkloadDeterministic(t *testing.T) {
	w := Workload{Seed: 42, Users: 100, Businesses: 10}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	a, b := NewGenerator(w), NewGenerator(w)
	for i := range 1000 {
		if x, y := a.Interaction(at), b.Interaction(at); x != y {
			t.Fatalf("interaction %d: %+v and %+v from the same workload", i, x, y)
		}
	}
	g := NewGenerator(w)
	want := []schemas.Interaction{
		{EventID: "ev-42-1", UserID: "user-000045", BusinessID: "biz-0000", Kind: schemas.UserMessage, OccurredAt: at},
		{EventID: "ev-42-2", UserID: "user-000083", BusinessID: "biz-0000", Kind: schemas.UserMessage, OccurredAt: at},
		{EventID: "ev-42-3", UserID: "user-000030", BusinessID: "biz-0001", Kind: schemas.BotStarted, OccurredAt: at},
	}
	for i, w := range want {
		if got := g.Interaction(at); got != w {
			t.Errorf("interaction %d of seed 42: %+v, want %+v", i+1, got, w)
		}
	}
	c := g.Campaign(at)
	if c.CampaignID != "camp-42-1" || c.BusinessID != "biz-0004" || len(c.Audience) != 0 || c.Message.Text != "Hello from biz-0004: 15% off this week" {
		t.Errorf("campaign 1 of seed 42: %+v", c)
	}
	if got := g.Poisson(10); got != 57041642*time.Nanosecond {
		t.Errorf("Poisson(10) after them: %v, want 57.041642ms", got)
	}
}

// TestFeed runs the demo's feeder briefly: interactions keyed by user and
// campaigns keyed by id reach the topics; at rate 0, campaigns only.
func TestFeed(t *testing.T) {
	tg, serde := startStack(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(tg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	feed := func(rate float64) []*kgo.Record {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		g := NewGenerator(Workload{Seed: 5, Users: 20, Businesses: 3})
		if err := Feed(ctx, cl, serde, tg.Topics.Interactions, tg.Topics.Campaigns, g, rate, 200*time.Millisecond); err != nil {
			t.Fatalf("Feed at rate %v: %v", rate, err)
		}
		return readCommitted(t, tg, tg.Topics.Interactions)
	}
	ins := feed(100)
	if len(ins) == 0 {
		t.Fatal("Feed at rate 100 for 700ms wrote no interaction")
	}
	if n := len(feed(0)); n != len(ins) {
		t.Errorf("Feed at rate 0 wrote %d interactions, want none", n-len(ins))
	}
	for _, r := range ins {
		in, err := serde.DecodeInteraction(r.Value)
		if err != nil || in.UserID != string(r.Key) {
			t.Errorf("interaction %q keyed %q (err %v)", in.UserID, r.Key, err)
		}
	}
	camps := readCommitted(t, tg, tg.Topics.Campaigns)
	if len(camps) < 2 {
		t.Fatalf("%d campaigns after two runs of 700ms launching every 200ms, want some of each", len(camps))
	}
	for _, r := range camps {
		c, err := serde.DecodeCampaign(r.Value)
		if err != nil || c.CampaignID != string(r.Key) {
			t.Errorf("campaign %q keyed %q (err %v)", c.CampaignID, r.Key, err)
		}
	}
}
