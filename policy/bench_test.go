package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// BenchmarkDecide measures one decision of a fan-out, with every rule on
// (audience, gap, per-user cap) so the delivered case walks them all. Both
// cases must not allocate: a fan-out makes millions of them.
func BenchmarkDecide(b *testing.B) {
	p, err := policy.New(policy.Config{ContactRetention: 365 * 24 * time.Hour, UserCap: 3, ConversationGap: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	const at = policy.Millis(1_767_225_600_000) // 2026-01-01T00:00Z
	camp := &policy.Campaign{
		ID: "c1", Business: "b1", SendAt: at, ExpiresAt: at + policy.Day,
		Audience: []schemas.AudienceRule{{Kind: schemas.BotStarted, WithinDays: 7}, {Kind: schemas.BotCTAClick, WithinDays: 30}},
	}
	contact := policy.Contact{Last: [3]policy.Millis{at - 3*policy.Day, 0, at - 10*policy.Day}, LastSent: at - 2*policy.Day}
	recent := []policy.Millis{at - 30*policy.Day, at - policy.Day/2}
	buf := make([]policy.Millis, 0, 4) // the runtime's decode buffer, reused

	b.Run("delivered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, r := contact, policy.Recipient{Sent: append(buf[:0], recent...)}
			if got := p.Decide(&c, &r, camp, at); got != policy.Delivered {
				b.Fatalf("Decide = %s, want DELIVERED", got)
			}
		}
	})
	b.Run("suppressed", func(b *testing.B) {
		b.ReportAllocs()
		c := contact
		c.LastSent = at - policy.Day/2
		r := policy.Recipient{Sent: append(buf[:0], recent...)}
		for b.Loop() {
			if got := p.Decide(&c, &r, camp, at); got != policy.FrequencyBusiness {
				b.Fatalf("Decide = %s, want FREQUENCY_BUSINESS", got)
			}
		}
	})
}

// TestDecideAllocs makes the benchmark's promise a test: the common cases
// of Decide allocate nothing.
func TestDecideAllocs(t *testing.T) {
	p, err := policy.New(policy.Config{ContactRetention: 365 * 24 * time.Hour, UserCap: 3})
	if err != nil {
		t.Fatal(err)
	}
	const at = policy.Millis(100 * policy.Day)
	camp := &policy.Campaign{ID: "c1", Business: "b1", SendAt: at, ExpiresAt: at}
	sent := make([]policy.Millis, 0, 4)
	for _, tc := range []struct {
		name string
		c    policy.Contact
		want policy.Reason
	}{
		{"delivered", policy.Contact{Last: [3]policy.Millis{at - policy.Day}}, policy.Delivered},
		{"suppressed", policy.Contact{Last: [3]policy.Millis{at - policy.Day}, Blocked: true, BlockAt: at - 1}, policy.Blocked},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			c, r := tc.c, policy.Recipient{Sent: append(sent[:0], at-2*policy.Day, at-policy.Day/2)}
			if got := p.Decide(&c, &r, camp, at); got != tc.want {
				t.Fatalf("Decide = %s, want %s", got, tc.want)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Decide allocated %.1f times per call, want 0", tc.name, allocs)
		}
	}
}

// BenchmarkDeliveryID measures the id a fan-out computes for every candidate.
func BenchmarkDeliveryID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		policy.DeliveryID("camp-000123", "user-0123456")
	}
}

// BenchmarkManyCampaigns measures what many campaigns over a long tail of
// businesses cost one partition in changelog records: 2,000 businesses
// with Zipf-like contact counts on the partition (most have none there, as
// on one partition of thousands), 3,000 campaigns of businesses drawn
// uniformly, ten read per transaction and fired by the stream time a
// transaction later, with fan-out chunks of 500 decisions. It reports the
// campaign records (puts and deletes) per campaign, and the metadata
// records per transaction, which stay one.
func BenchmarkManyCampaigns(b *testing.B) {
	const (
		businesses = 2000
		campaigns  = 3000
		perTxn     = 10
		chunk      = 500
	)
	for b.Loop() {
		r := newPartitionRun(b, 0, chunk, nil)
		day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// Contacts: business i has about 4000/(i+1) users on the
		// partition, none past the first few hundred businesses.
		for i := range businesses {
			n := 4000 / (i + 1)
			for u := range n {
				r.interaction(fmt.Sprintf("u%05d", u), fmt.Sprintf("b%04d", i), schemas.UserMessage, day)
			}
			if i%50 == 0 {
				r.commit()
			}
		}
		r.commit()
		campaignRecords, metaRecords, txns := 0, 0, 0
		r.finished = func(batch *state.Batch) {
			for _, ch := range batch.Changes() {
				switch ch.Key[0] {
				case state.CampaignChangelogKey("")[0]:
					campaignRecords++
				case state.MetaChangelogKey()[0]:
					metaRecords++
				}
			}
			txns++
		}
		at := day.Add(time.Hour)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < campaigns; i += perTxn {
			for j := range perTxn {
				biz := fmt.Sprintf("b%04d", rng.IntN(businesses))
				r.launchAt(fmt.Sprintf("c%05d", i+j), biz, at.Add(time.Duration(j)*time.Second), int64(i+j))
			}
			r.commit()
			at = at.Add(time.Minute)
			// The next interaction fires the campaigns due before it;
			// the fan-outs may take more transactions.
			for !r.interaction("u00000", "b0000", schemas.UserMessage, at) {
				r.commit()
			}
			r.commit()
		}
		b.ReportMetric(float64(campaignRecords)/campaigns, "campaign-records/campaign")
		b.ReportMetric(float64(metaRecords)/float64(txns), "meta-records/txn")
	}
}
