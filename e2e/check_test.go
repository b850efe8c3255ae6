package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
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
//
// It also checks the audit trail, the decisions topic, which every test's
// pipeline writes (decisions are on by default), in the same transactions as
// the inbox: one decision per (campaign, user) at most, and the DELIVERED
// ones exactly the expected deliveries.
func (c *cluster) checkInbox(t testing.TB, sc scenario, want map[pairKey]delivery) inboxReport {
	t.Helper()
	recs := c.readAll(t, c.names.Inbox)
	rep := compareInbox(c.serde, recs, want, sc.Campaigns, c.parts)
	if !rep.ok() {
		t.Errorf("inbox is not the oracle's: %s", rep)
	}
	drep := compareDecisions(c.serde, c.readAll(t, c.names.Decisions), want, nil, c.parts)
	if !drep.ok() {
		t.Errorf("decisions are not the oracle's: %s", drep)
	}
	return rep
}

// decisionReport is the comparison of the decisions topic with the oracle.
type decisionReport struct {
	Records    int
	Chunks     int // records of the chunk form; the rest are per candidate
	Candidates int // decisions in the records, of both forms
	ByOutcome  map[schemas.Outcome]int
	Duplicates []string // a second decision about a (campaign, user) pair
	Missing    []string // an expected delivery (or suppression) with no decision
	Wrong      []string // bad records, a wrong outcome, a DELIVERED the oracle does not expect
}

func (r decisionReport) ok() bool { return len(r.Duplicates)+len(r.Missing)+len(r.Wrong) == 0 }

func (r decisionReport) String() string {
	return fmt.Sprintf("records %d (%d chunks), candidates %d, by outcome %v; duplicates %d [%s]; missing %d [%s]; wrong %d [%s]",
		r.Records, r.Chunks, r.Candidates, r.ByOutcome, len(r.Duplicates), firstFew(r.Duplicates), len(r.Missing), firstFew(r.Missing), len(r.Wrong), firstFew(r.Wrong))
}

// oracleOutcome maps an outcome of the oracle's decide to the pipeline's;
// the oracle tells a forgotten contact from a stranger, the pipeline (and
// the rules) do not.
var oracleOutcome = map[string]schemas.Outcome{
	outDelivered: schemas.Delivered, outErasedReset: schemas.Delivered,
	outStranger: schemas.NoContact, outRetention: schemas.NoContact,
	outBlocked: schemas.Blocked, outOptedOut: schemas.OptedOut, outAudience: schemas.NotInAudience,
	outWindow: schemas.FrequencyBusiness,
}

// compareDecisions checks the decision records, of either form: each
// decodes; a per-candidate record is keyed by its user on the user's
// partition and carries DeliveryID(campaign, user); a chunk record is keyed
// by its campaign, names the partition it is on, and holds users of that
// partition in ascending order after its cursor. Each decision is the only
// one of its pair; the DELIVERED ones are exactly want. With outcomes (the
// oracle's outcome of every pair, see oracleOutcomes), every decision's
// outcome must be the oracle's, and every pair the oracle suppresses for a
// reason other than no contact (so the user is among the business's
// contacts) must have its decision.
func compareDecisions(serde *wire.Serde, recs []*kgo.Record, want map[pairKey]delivery, outcomes map[pairKey]string, parts int32) decisionReport {
	rep := decisionReport{Records: len(recs), ByOutcome: map[schemas.Outcome]int{}}
	seen := map[pairKey]schemas.Outcome{}
	for _, r := range recs {
		where := fmt.Sprintf("decisions %d@%d", r.Partition, r.Offset)
		c, chunk, err := serde.DecodeDecisionChunk(r.Value)
		var ds []schemas.Decision
		if err == nil && chunk {
			rep.Chunks++
			switch {
			case string(r.Key) != c.CampaignID:
				rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: chunk key %q, want the campaign_id %q", where, r.Key, c.CampaignID))
			case c.Partition != r.Partition:
				rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: chunk of partition %d on partition %d", where, c.Partition, r.Partition))
			case !slices.IsSorted(c.Users) || c.Users[0] <= c.After && c.After != "":
				rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: chunk users %q after %q, want ascending after the cursor", where, firstFew(c.Users), c.After))
			}
			ds = c.Decisions(nil)
		} else if err == nil {
			ds, err = serde.DecodeDecisions(nil, r.Value)
			if err == nil {
				d := ds[0]
				switch {
				case string(r.Key) != d.UserID:
					rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: key %q, want the user_id %q", where, r.Key, d.UserID))
				case d.DeliveryID != policy.DeliveryID(d.CampaignID, d.UserID):
					rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: delivery id %q, want %q", where, d.DeliveryID, policy.DeliveryID(d.CampaignID, d.UserID)))
				}
			}
		}
		if err != nil {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: value does not decode: %v", where, err))
			continue
		}
		for _, d := range ds {
			rep.Candidates++
			compareDecision(&rep, where, r.Partition, d, seen, want, outcomes, parts)
		}
	}
	for k, d := range want {
		if _, ok := seen[k]; !ok {
			rep.Missing = append(rep.Missing, d.String()+" (DELIVERED)")
		}
	}
	for k, why := range outcomes {
		if _, ok := seen[k]; !ok && why != outStranger && why != outRetention && oracleOutcome[why] != schemas.Delivered {
			rep.Missing = append(rep.Missing, fmt.Sprintf("%s->%s (%s)", k.Campaign, k.User, why))
		}
	}
	slices.Sort(rep.Missing)
	return rep
}

// compareDecision checks one decision d, of the record at where on
// partition p, for compareDecisions.
func compareDecision(rep *decisionReport, where string, p int32, d schemas.Decision, seen map[pairKey]schemas.Outcome, want map[pairKey]delivery, outcomes map[pairKey]string, parts int32) {
	k := pairKey{d.CampaignID, d.UserID}
	if prev, ok := seen[k]; ok {
		rep.Duplicates = append(rep.Duplicates, fmt.Sprintf("%s: %s->%s %s again (first %s)", where, d.CampaignID, d.UserID, d.Outcome, prev))
		return
	}
	seen[k] = d.Outcome
	rep.ByOutcome[d.Outcome]++
	if p != userPartition(d.UserID, parts) {
		rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: user %s on partition %d, want %d", where, d.UserID, p, userPartition(d.UserID, parts)))
	}
	_, delivered := want[k]
	if (d.Outcome == schemas.Delivered) != delivered {
		rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %s->%s %s, but the oracle's deliveries %s it", where, d.CampaignID, d.UserID, d.Outcome,
			map[bool]string{true: "include", false: "do not include"}[delivered]))
		return
	}
	if delivered && !d.DecidedAsOf.Equal(want[k].SentAt) {
		rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v decided as of %s, want the sent_at %s", where, k, d.DecidedAsOf.UTC(), want[k].SentAt.UTC()))
	}
	if outcomes != nil {
		if o, ok := oracleOutcome[outcomes[k]]; !ok || o != d.Outcome {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %s->%s %s, the oracle says %q", where, d.CampaignID, d.UserID, d.Outcome, outcomes[k]))
		}
	}
}

// TestCompareDecisionsCatches is the decision checker's negative control: a
// duplicate, a missing decision, a wrong outcome and a DELIVERED the oracle
// does not expect must each be reported.
func TestCompareDecisionsCatches(t *testing.T) {
	c := newCluster(t, "decisions-check", 1)
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rec := func(u string, o schemas.Outcome) *kgo.Record {
		d := schemas.Decision{DeliveryID: policy.DeliveryID("c1", u), UserID: u, BusinessID: "b", CampaignID: "c1", Outcome: o, DecidedAsOf: send}
		v, err := c.serde.AppendDecision(nil, &d)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Key: []byte(u), Value: v}
	}
	chunk := func(key, after string, users []string, os ...schemas.Outcome) *kgo.Record {
		v, err := c.serde.AppendDecisionChunk(nil, &schemas.DecisionChunk{BusinessID: "b", CampaignID: "c1", DecidedAsOf: send, After: after, Users: users, Outcomes: os})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Key: []byte(key), Value: v}
	}
	want := map[pairKey]delivery{{"c1", "u1"}: {Campaign: "c1", User: "u1", Business: "b", SentAt: send}}
	outcomes := map[pairKey]string{{"c1", "u1"}: outDelivered, {"c1", "u2"}: outBlocked, {"c1", "u3"}: outStranger}
	good := []*kgo.Record{rec("u1", schemas.Delivered), rec("u2", schemas.Blocked)}
	if rep := compareDecisions(c.serde, good, want, outcomes, 1); !rep.ok() {
		t.Fatalf("good decisions reported: %s", rep)
	}
	goodChunks := []*kgo.Record{chunk("c1", "", []string{"u1"}, schemas.Delivered), chunk("c1", "u1", []string{"u2"}, schemas.Blocked)}
	if rep := compareDecisions(c.serde, goodChunks, want, outcomes, 1); !rep.ok() || rep.Chunks != 2 || rep.Candidates != 2 {
		t.Fatalf("good chunks reported: %s", rep)
	}
	for _, tc := range []struct {
		name string
		recs []*kgo.Record
	}{
		{"chunk duplicate", append(goodChunks[:2:2], chunk("c1", "u2", []string{"u2"}, schemas.Blocked))},
		{"chunk missing", goodChunks[1:]},
		{"chunk wrong reason", []*kgo.Record{goodChunks[0], chunk("c1", "u1", []string{"u2"}, schemas.OptedOut)}},
		{"chunk keyed by user", []*kgo.Record{goodChunks[0], chunk("u2", "u1", []string{"u2"}, schemas.Blocked)}},
		{"chunk out of order", []*kgo.Record{chunk("c1", "", []string{"u2", "u1"}, schemas.Blocked, schemas.Delivered)}},
	} {
		if rep := compareDecisions(c.serde, tc.recs, want, outcomes, 1); rep.ok() {
			t.Errorf("%s: not reported: %s", tc.name, rep)
		}
	}
	for _, tc := range []struct {
		name string
		recs []*kgo.Record
		bad  func(decisionReport) int
	}{
		{"duplicate", append(good[:2:2], rec("u2", schemas.Blocked)), func(r decisionReport) int { return len(r.Duplicates) }},
		{"missing delivery", good[1:], func(r decisionReport) int { return len(r.Missing) }},
		{"missing suppression", good[:1], func(r decisionReport) int { return len(r.Missing) }},
		{"wrong reason", []*kgo.Record{good[0], rec("u2", schemas.OptedOut)}, func(r decisionReport) int { return len(r.Wrong) }},
		{"unexpected delivery", append(good[:2:2], rec("u3", schemas.Delivered)), func(r decisionReport) int { return len(r.Wrong) }},
	} {
		if rep := compareDecisions(c.serde, tc.recs, want, outcomes, 1); tc.bad(rep) == 0 {
			t.Errorf("%s: not reported: %s", tc.name, rep)
		}
	}
}
