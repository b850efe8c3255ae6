package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/pipeline/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

// inboxReport is the comparison of the inbox with the oracle.
type inboxReport struct {
	Records    int // inbox records read
	Deliveries int // distinct (campaign, user) pairs among them
	Expected   int
	Duplicates []string
	Missing    []string
	Extra      []string
	Wrong      []string // records that decode badly or whose fields are not the oracle's
}

func (r inboxReport) ok() bool {
	return len(r.Duplicates)+len(r.Missing)+len(r.Extra)+len(r.Wrong) == 0
}

func firstFew(xs []string) string {
	if len(xs) > 8 {
		return strings.Join(xs[:8], "; ") + fmt.Sprintf("; ... (%d in all)", len(xs))
	}
	return strings.Join(xs, "; ")
}

func (r inboxReport) String() string {
	return fmt.Sprintf("records %d, deliveries %d, expected %d; duplicates %d [%s]; missing %d [%s]; extra %d [%s]; wrong %d [%s]",
		r.Records, r.Deliveries, r.Expected, len(r.Duplicates), firstFew(r.Duplicates), len(r.Missing), firstFew(r.Missing),
		len(r.Extra), firstFew(r.Extra), len(r.Wrong), firstFew(r.Wrong))
}

// userPartition returns the partition franz-go's default partitioner puts a
// record keyed by user on: where the user's interactions are, hence (by
// co-partitioning) where the user's inbox records must be.
func userPartition(user string, parts int32) int32 {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("interactions")
	return int32(p.Partition(&kgo.Record{Key: []byte(user)}, int(parts)))
}

// compareInbox checks the inbox records one by one against the expected
// deliveries: key = user_id, on the user's partition, value decodes, the
// delivery id is DeliveryID(campaign, user), sent_at, business and message
// are the campaign's; no duplicate, none missing, nothing extra.
func compareInbox(serde *wire.Serde, recs []*kgo.Record, want map[pairKey]delivery, camps []schemas.Campaign, parts int32) inboxReport {
	msgs := map[string]schemas.Message{}
	for _, c := range firingCampaigns(camps) {
		msgs[c.CampaignID] = c.Message
	}
	rep := inboxReport{Records: len(recs), Expected: len(want)}
	seen := map[pairKey]int{}
	ids := map[string]pairKey{}
	for _, r := range recs {
		where := fmt.Sprintf("inbox %d@%d", r.Partition, r.Offset)
		m, err := serde.DecodeInbox(r.Value)
		if err != nil {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: value does not decode: %v", where, err))
			continue
		}
		k := pairKey{m.CampaignID, m.UserID}
		seen[k]++
		if seen[k] == 2 {
			rep.Duplicates = append(rep.Duplicates, fmt.Sprintf("%s: %s->%s again", where, m.CampaignID, m.UserID))
		}
		if prev, ok := ids[m.DeliveryID]; ok && prev != k {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: delivery id %s of %v reused for %v", where, m.DeliveryID, prev, k))
		}
		ids[m.DeliveryID] = k
		if string(r.Key) != m.UserID {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: key %q, want the user_id %q", where, r.Key, m.UserID))
		}
		if want := userPartition(m.UserID, parts); r.Partition != want {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: user %s on partition %d, want %d (co-partitioned with interactions)", where, m.UserID, r.Partition, want))
		}
		if id := policy.DeliveryID(m.CampaignID, m.UserID); m.DeliveryID != id {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: delivery id %q, want %q", where, m.DeliveryID, id))
		}
		d, ok := want[k]
		if !ok {
			if seen[k] == 1 {
				rep.Extra = append(rep.Extra, fmt.Sprintf("%s: %s->%s sent_at %s", where, m.CampaignID, m.UserID, m.SentAt.UTC().Format("2006-01-02T15:04:05.000Z")))
			}
			continue
		}
		if !m.SentAt.Equal(d.SentAt) {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v sent_at %s, want %s", where, k, m.SentAt.UTC(), d.SentAt.UTC()))
		}
		if m.BusinessID != d.Business {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v business %q, want %q", where, k, m.BusinessID, d.Business))
		}
		if wm := msgs[m.CampaignID]; !sameMessage(wm, m.Message) {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v message %+v, want %+v", where, k, m.Message, wm))
		}
	}
	rep.Deliveries = len(seen)
	for k, d := range want {
		if seen[k] == 0 {
			rep.Missing = append(rep.Missing, d.String())
		}
	}
	slices.Sort(rep.Missing)
	return rep
}

func sameMessage(a, b schemas.Message) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Text == b.Text && eq(a.CTALabel, b.CTALabel) && eq(a.CTAURL, b.CTAURL)
}

// checkInbox reads the whole inbox and fails the test unless it is exactly
// the expected deliveries.
func (c *cluster) checkInbox(t testing.TB, sc scenario, want map[pairKey]delivery) inboxReport {
	t.Helper()
	recs := c.readAll(t, c.names.Inbox)
	rep := compareInbox(c.serde, recs, want, sc.Campaigns, c.parts)
	if !rep.ok() {
		t.Errorf("inbox is not the oracle's: %s", rep)
	}
	return rep
}
