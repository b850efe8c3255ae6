package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/ops/redrive"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// TestWrongPartitionRedrive: the seeded history plus 300 interactions of a
// business of its own written to the wrong partition (by hand, as a
// producer with another partitioner would: kcat's default is CRC32) gives
// exactly the inbox of the history without them; each of them is in the
// dead-letter topic with reason wrong-partition and the partition it belongs
// to; and after `sponsor deadletter redrive` (its library function) they are
// applied where they belong: a later campaign of that business reaches
// nobody who opted out or blocked in a misplaced record, and reaches
// everyone whose first contact was misplaced.
//
// Users opt-out-* and block-* made contact on their own partition, then
// opted out or blocked on another one; users first-* made their only
// contact on another one. Campaign wp-early fires before the redrive (all
// of opt-out-* and block-* get it, first-* do not), wp-late after it, more
// than 24 hours later (only first-* get it).
func TestWrongPartitionRedrive(t *testing.T) {
	const groupSize = 100
	sc := newScenario(smallScenario)
	c := newCluster(t, "wrongpart", 4)
	part := topics.DefaultPartitioner

	biz := "wp-biz"
	base := histEnd.Add(time.Hour) // after the whole history: the records arrive in event-time order
	early := schemas.Campaign{CampaignID: "wp-early", BusinessID: biz, Action: schemas.Launch, SendAt: base.Add(24 * time.Hour),
		ExpiresAt: base.Add(25 * time.Hour), Message: schemas.Message{Text: "before the redrive"}}
	late := schemas.Campaign{CampaignID: "wp-late", BusinessID: biz, Action: schemas.Launch, SendAt: early.SendAt.Add(48 * time.Hour),
		ExpiresAt: early.SendAt.Add(49 * time.Hour), Message: schemas.Message{Text: "after the redrive"}}

	var placed, misplaced []schemas.Interaction
	seq := 0
	event := func(to *[]schemas.Interaction, user string, kind schemas.InteractionKind, at time.Time) {
		seq++
		*to = append(*to, schemas.Interaction{EventID: fmt.Sprintf("wp-%d", seq), UserID: user, BusinessID: biz, Kind: kind,
			OccurredAt: at.Add(time.Duration(seq) * time.Millisecond)})
	}
	for i := range groupSize {
		event(&placed, fmt.Sprintf("opt-out-%03d", i), schemas.UserMessage, base)
		event(&placed, fmt.Sprintf("block-%03d", i), schemas.BotStarted, base)
	}
	for i := range groupSize {
		event(&misplaced, fmt.Sprintf("opt-out-%03d", i), schemas.SponsoredOptOut, base.Add(time.Hour))
		event(&misplaced, fmt.Sprintf("block-%03d", i), schemas.Block, base.Add(time.Hour))
		event(&misplaced, fmt.Sprintf("first-%03d", i), schemas.UserMessage, base.Add(time.Hour))
	}

	c.produceScenario(t, sc)
	c.produce(t, c.campaignRecord(t, &early))
	var placedRecs []*kgo.Record
	for i := range placed {
		placedRecs = append(placedRecs, c.interactionRecord(t, &placed[i]))
	}
	c.produce(t, placedRecs...)
	// The misplaced records: each on the partition after its key's.
	manual, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	var wrongRecs []*kgo.Record
	for i := range misplaced {
		r := c.interactionRecord(t, &misplaced[i])
		r.Partition = (part.Partition(r.Key, c.parts) + 1) % c.parts
		wrongRecs = append(wrongRecs, r)
	}
	if err := manual.ProduceSync(testContext(t, time.Minute), wrongRecs...).FirstErr(); err != nil {
		t.Fatalf("produce the misplaced records: %v", err)
	}

	// Before the redrive: the inbox of the history without the misplaced
	// records.
	camps := append(slices.Clone(sc.Campaigns), early)
	ins := append(slices.Clone(sc.Interactions), placed...)
	want, _ := expectedDeliveries(ins, camps, defaultOracle)
	for i := range groupSize {
		for _, u := range []string{fmt.Sprintf("opt-out-%03d", i), fmt.Sprintf("block-%03d", i)} {
			if _, ok := want[pairKey{early.CampaignID, u}]; !ok {
				t.Fatalf("oracle: %s does not get %s", u, early.CampaignID)
			}
		}
	}
	h := startRunner(t, c, t.TempDir(), nil)
	c.waitSettled(t, campaignIDs(camps), 90*time.Second, h.alive)
	rep := c.checkInbox(t, scenario{Campaigns: camps, Interactions: ins}, want)
	t.Logf("before the redrive: interactions %d (misplaced %d), inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d",
		len(ins)+len(misplaced), len(misplaced), rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra))

	// Every misplaced record is a wrong-partition dead letter naming both
	// partitions, and nothing else is.
	dls := c.readAll(t, c.names.DeadLetter)
	if len(dls) != len(wrongRecs) {
		t.Errorf("dead-letter topic holds %d records, want %d (the misplaced ones)", len(dls), len(wrongRecs))
	}
	for _, src := range wrongRecs {
		var found *kgo.Record
		for _, d := range dls {
			if bytes.Equal(d.Key, src.Key) && bytes.Equal(d.Value, src.Value) {
				found = d
			}
		}
		if found == nil {
			t.Errorf("misplaced record %q (%s/%d@%d) is not in the dead-letter topic", src.Key, src.Topic, src.Partition, src.Offset)
			continue
		}
		for k, v := range map[string]string{
			deadletter.HeaderReason:            string(deadletter.ReasonWrongPartition),
			deadletter.HeaderTopic:             c.names.Interactions,
			deadletter.HeaderPartition:         strconv.Itoa(int(src.Partition)),
			deadletter.HeaderOffset:            strconv.FormatInt(src.Offset, 10),
			deadletter.HeaderExpectedPartition: strconv.Itoa(int(part.Partition(src.Key, c.parts))),
		} {
			if got := header(found, k); got != v {
				t.Errorf("dead letter of %q: header %s = %q, want %q", src.Key, k, got, v)
			}
		}
	}
	if got := h.r.Stats().DeadLettersByReason()[string(deadletter.ReasonWrongPartition)]; got != int64(len(wrongRecs)) {
		t.Errorf("wrong-partition dead letters counted: %d, want %d", got, len(wrongRecs))
	}

	// A redrive with another partitioner than the pipeline's refuses: the
	// records would only come back.
	cfg := redrive.Config{Brokers: c.brokers, Names: c.names, Group: c.group, Reason: string(deadletter.ReasonWrongPartition), Partitioner: topics.CRC32}
	if _, err := redrive.MakePlan(testContext(t, time.Minute), cfg); !errors.Is(err, redrive.ErrPartitionerMismatch) {
		t.Errorf("plan with --partitioner crc32 of a murmur2 pipeline's dead letters: %v, want ErrPartitionerMismatch", err)
	}
	cfg.Partitioner = part
	plan, err := redrive.MakePlan(testContext(t, time.Minute), cfg)
	if err != nil {
		t.Fatalf("redrive plan: %v", err)
	}
	if plan.Total() != int64(len(wrongRecs)) {
		t.Fatalf("redrive plan sends %d, want %d", plan.Total(), len(wrongRecs))
	}
	res, err := redrive.Run(testContext(t, 2*time.Minute), cfg, plan)
	if err != nil || res.Total() != int64(len(wrongRecs)) {
		t.Fatalf("redrive: sent %d, %v; want %d, nil", res.Total(), err, len(wrongRecs))
	}
	// The pipeline applies them (and dead-letters none again); then the
	// later campaign.
	c.waitSettled(t, campaignIDs(camps), 90*time.Second, h.alive)
	c.produce(t, c.campaignRecord(t, &late))
	camps = append(camps, late)
	c.waitSettled(t, campaignIDs(camps), 90*time.Second, h.alive)

	all := append(slices.Clone(ins), misplaced...)
	slices.SortStableFunc(all, func(a, b schemas.Interaction) int { return a.OccurredAt.Compare(b.OccurredAt) })
	lateWant, _ := expectedDeliveries(all, []schemas.Campaign{late}, defaultOracle)
	if len(lateWant) != groupSize {
		t.Fatalf("oracle: %d deliveries of %s, want %d (the first-* users)", len(lateWant), late.CampaignID, groupSize)
	}
	for k, d := range lateWant {
		want[k] = d
	}
	rep = c.checkInbox(t, scenario{Campaigns: camps, Interactions: all}, want)
	for i := range groupSize {
		for _, u := range []string{fmt.Sprintf("opt-out-%03d", i), fmt.Sprintf("block-%03d", i)} {
			if _, ok := want[pairKey{late.CampaignID, u}]; ok {
				t.Fatalf("oracle: %s gets %s after its redriven opt-out or block", u, late.CampaignID)
			}
		}
	}
	if n := len(c.readAll(t, c.names.DeadLetter)); n != len(wrongRecs) {
		t.Errorf("dead-letter topic holds %d records after the redrive, want still %d: a redriven record was rejected again", n, len(wrongRecs))
	}
	t.Logf("after the redrive: redriven %d, inbox records %d, deliveries %d, expected %d (of %s: %d), duplicates %d, missing %d, extra %d",
		res.Total(), rep.Records, rep.Deliveries, rep.Expected, late.CampaignID, len(lateWant), len(rep.Duplicates), len(rep.Missing), len(rep.Extra))
}
