package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
)

// TestReportAndExplain runs the pipeline on a scenario, then the `sponsor
// report` and `sponsor explain` commands (the built binary, as an SRE runs
// them) and checks what they print against the oracle and the inbox: per
// campaign, the delivered count equals the oracle's deliveries and the
// inbox's records, and every suppression count equals the oracle's for that
// reason; for chosen (campaign, user) pairs, explain's outcome is the
// oracle's and it finds the delivery in the inbox exactly when there is one.
func TestReportAndExplain(t *testing.T) {
	bin := sponsorBinary(t)
	sc := newScenario(smallScenario)
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	outcomes := oracleOutcomes(sc.Interactions, sc.Campaigns, defaultOracle)
	c := newCluster(t, "audit", 4)
	c.produceScenario(t, sc)
	h := startRunner(t, c, t.TempDir(), nil)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 90*time.Second, h.alive)
	c.checkInbox(t, sc, want)
	inboxByCampaign := map[string]int64{}
	for _, r := range c.readAll(t, c.names.Inbox) {
		m, err := c.serde.DecodeInbox(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		inboxByCampaign[m.CampaignID]++
	}

	run := func(args ...string) ([]byte, error) {
		args = append(args, "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix)
		cmd := exec.Command(bin, args...)
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return out, &cmdError{err: ee, stderr: string(ee.Stderr)}
		}
		return out, err
	}

	// report, for every campaign that fired.
	oracleByCampaign := map[string]map[string]int64{}
	for k, why := range outcomes {
		o, ok := oracleOutcome[why]
		if !ok {
			t.Fatalf("oracle outcome %q has no pipeline outcome", why)
		}
		if oracleByCampaign[k.Campaign] == nil {
			oracleByCampaign[k.Campaign] = map[string]int64{}
		}
		oracleByCampaign[k.Campaign][o.String()]++
	}
	reported := 0
	for _, id := range campaignIDs(sc.Campaigns) {
		out, err := run("report", "--campaign", id, "--inbox", "--json")
		var rep struct {
			Business string `json:"business_id"`
			Total    struct {
				Delivered int64            `json:"delivered"`
				ByOutcome map[string]int64 `json:"by_outcome"`
			} `json:"total"`
			Partitions   map[string]json.RawMessage `json:"partitions"`
			InboxRecords *int64                     `json:"inbox_records"`
		}
		if oracleByCampaign[id]["DELIVERED"] == 0 && err != nil && strings.Contains(err.Error(), "no decision about campaign") {
			continue // never fired, or fired with no candidate: nothing to report
		}
		if err != nil {
			t.Fatalf("sponsor report --campaign %s: %v", id, err)
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("sponsor report --campaign %s --json: %v\n%s", id, err, out)
		}
		reported++
		wantDelivered := oracleByCampaign[id]["DELIVERED"]
		if rep.Total.Delivered != wantDelivered || rep.InboxRecords == nil || *rep.InboxRecords != inboxByCampaign[id] || inboxByCampaign[id] != wantDelivered {
			t.Errorf("report %s: delivered %d, inbox records %v; want the oracle's %d and the inbox's %d", id, rep.Total.Delivered, rep.InboxRecords, wantDelivered, inboxByCampaign[id])
		}
		for o, n := range rep.Total.ByOutcome {
			// NO_CONTACT candidates are the index's users without a
			// user-initiated interaction: fewer than the oracle's
			// strangers (every user of the scenario).
			if o != "NO_CONTACT" && n != oracleByCampaign[id][o] {
				t.Errorf("report %s: %s %d, the oracle says %d", id, o, n, oracleByCampaign[id][o])
			}
		}
		for o, n := range oracleByCampaign[id] {
			if o != "NO_CONTACT" && rep.Total.ByOutcome[o] != n {
				t.Errorf("report %s: %s %d, the oracle says %d", id, o, rep.Total.ByOutcome[o], n)
			}
		}
	}
	if reported == 0 {
		t.Fatal("no campaign was reported")
	}
	if _, err := run("report", "--campaign", "no-such-campaign"); err == nil || !strings.Contains(err.Error(), "no decision about campaign") {
		t.Errorf("report of an unknown campaign: %v, want a 'no decision' error", err)
	}

	// explain, for one pair of each oracle outcome, and a user who never
	// wrote to the business.
	picked := map[string]pairKey{}
	var keys []pairKey
	for k := range outcomes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b pairKey) int { return strings.Compare(a.Campaign+"/"+a.User, b.Campaign+"/"+b.User) })
	for _, k := range keys {
		if _, ok := picked[outcomes[k]]; !ok {
			picked[outcomes[k]] = k
		}
	}
	explain := func(campaign, user string) ([]byte, int, error) {
		out, err := run("explain", "--campaign", campaign, "--user", user, "--group", c.group, "--json")
		if ee, ok := errors.AsType[*cmdError](err); ok {
			if xe, ok := errors.AsType[*exec.ExitError](ee.err); ok {
				return out, xe.ExitCode(), err
			}
		}
		return out, 0, err
	}
	for why, k := range picked {
		out, code, err := explain(k.Campaign, k.User)
		noDecision := why == outStranger || why == outRetention
		if err != nil && !(noDecision && code == 4) {
			t.Errorf("explain %v (%s): %v", k, why, err)
			continue
		}
		var ex struct {
			Outcome    string          `json:"outcome"`
			Verdict    string          `json:"verdict"`
			Consistent bool            `json:"consistent"`
			Inbox      json.RawMessage `json:"inbox"`
		}
		if err := json.Unmarshal(out, &ex); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		_, delivered := want[k]
		wantOutcome := oracleOutcome[why].String()
		switch {
		case !ex.Consistent:
			t.Errorf("explain %v: inconsistent: %s", k, ex.Verdict)
		case delivered != (ex.Inbox != nil):
			t.Errorf("explain %v (%s): inbox %s, want a delivery %v", k, why, ex.Inbox, delivered)
		case noDecision:
			// No user-initiated interaction: no decision at all (exit 4),
			// or a NO_CONTACT one for a user in the index (a BLOCK
			// alone), each with the one cause the state shows.
			if ex.Outcome != "" && ex.Outcome != "NO_CONTACT" || !strings.Contains(ex.Verdict, "NO_CONTACT") && !strings.Contains(ex.Verdict, "no decision") {
				t.Errorf("explain %v (%s): %q %q, want no decision or NO_CONTACT", k, why, ex.Outcome, ex.Verdict)
			}
			if (ex.Outcome == "") != (code == 4) {
				t.Errorf("explain %v (%s): outcome %q, exit %d; want exit 4 exactly when there is no decision", k, why, ex.Outcome, code)
			}
			if strings.Contains(ex.Verdict, ", or ") {
				t.Errorf("explain %v (%s): %q lists several causes; the state shows one", k, why, ex.Verdict)
			}
		case ex.Outcome != wantOutcome:
			t.Errorf("explain %v: outcome %q (%s), the oracle says %s", k, ex.Outcome, ex.Verdict, wantOutcome)
		}
		t.Logf("explain %s %s (oracle: %s): %s", k.Campaign, k.User, why, ex.Verdict)
	}
	if len(picked) < 4 {
		t.Errorf("the scenario gave only %d kinds of outcome to explain: %v", len(picked), picked)
	}

	// A campaign that does not exist, one that has not fired yet and one
	// cancelled before it fired: explain says which, from the state of
	// the user's partition, and exits 3 for the first, 4 for the others.
	if out, code, err := explain("no-such-campaign", userID(1)); code != 3 || !strings.Contains(string(out), "no such campaign") {
		t.Errorf("explain of an unknown campaign: exit %d (%v)\n%s\nwant exit 3, 'no such campaign'", code, err, out)
	}
	later := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	pending := schemas.Campaign{CampaignID: "later", BusinessID: businessID(0), Action: schemas.Launch, SendAt: later, ExpiresAt: later.Add(time.Hour), Message: schemas.Message{Text: "later"}}
	cancelled := pending
	cancelled.CampaignID = "cancelled"
	cancel := cancelled
	cancel.Action = schemas.Cancel
	c.produce(t, c.campaignRecord(t, &pending), c.campaignRecord(t, &cancelled), c.campaignRecord(t, &cancel))
	for id, says := range map[string]string{"later": "PENDING on partition", "cancelled": "CANCELLED on partition"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, code, err := explain(id, userID(1))
			if code == 4 && strings.Contains(string(out), says) {
				t.Logf("explain %s %s: %s", id, userID(1), out)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("explain %s: exit %d (%v)\n%s\nwant exit 4 and %q", id, code, err, out, says)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// cmdError is a failed command with its stderr.
type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// TestDecisionsOneRecordPerChunk runs a fan-out of 250 contacts on 3
// partitions in chunks of 40 and checks that the decisions topic holds one
// record per chunk, in the chunk form: per partition, ceil(contacts/40)
// records, each keyed by the campaign, chained by their cursors from the
// first (cursor empty) to the one that finished the fan-out; that the
// records hold every candidate's outcome (the oracle's, checkInbox); and
// that `sponsor report` and `sponsor explain`, reading those records, agree
// with the inbox.
func TestDecisionsOneRecordPerChunk(t *testing.T) {
	bin := sponsorBinary(t)
	const contacts, chunk = 250, 40
	c := newCluster(t, "chunks", 3)
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	camp := schemas.Campaign{CampaignID: "camp-chunks", BusinessID: "biz-chunks", Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour), Message: schemas.Message{Text: "chunks"}}
	var ins []schemas.Interaction
	perPartition := map[int32]int{}
	for i := range contacts {
		u := userID(i)
		perPartition[userPartition(u, c.parts)]++
		ins = append(ins, schemas.Interaction{EventID: fmt.Sprint("m", i), UserID: u, BusinessID: camp.BusinessID, Kind: schemas.UserMessage, OccurredAt: send.Add(-time.Duration(contacts-i) * time.Minute)})
		if i%5 == 0 { // a fifth block the business afterwards
			ins = append(ins, schemas.Interaction{EventID: fmt.Sprint("b", i), UserID: u, BusinessID: camp.BusinessID, Kind: schemas.Block, OccurredAt: send.Add(-time.Second)})
		}
	}
	sc := scenario{Campaigns: []schemas.Campaign{camp}, Interactions: ins}
	c.produceScenario(t, sc)
	want, _ := expectedDeliveries(ins, sc.Campaigns, defaultOracle)
	if len(want) != contacts*4/5 {
		t.Fatalf("the oracle delivers %d, want %d", len(want), contacts*4/5)
	}
	h := startRunner(t, c, t.TempDir(), func(cfg *pipeline.Config) { cfg.FanoutChunk = chunk })
	c.waitSettled(t, campaignIDs(sc.Campaigns), 60*time.Second, h.alive)
	c.checkInbox(t, sc, want)

	recs := c.readAll(t, c.names.Decisions)
	drep := compareDecisions(c.serde, recs, want, oracleOutcomes(ins, sc.Campaigns, defaultOracle), c.parts)
	if !drep.ok() || drep.Chunks != drep.Records || drep.Candidates != contacts {
		t.Errorf("decisions: %s; want only chunk records, %d candidates", drep, contacts)
	}
	wantRecords := 0
	for _, n := range perPartition {
		wantRecords += (n + chunk - 1) / chunk
	}
	if len(recs) != wantRecords {
		t.Errorf("decisions topic has %d records for %d candidates on %d partitions in chunks of %d, want %d (one per chunk)", len(recs), contacts, c.parts, chunk, wantRecords)
	}
	byPartition := map[int32][]schemas.DecisionChunk{}
	for _, r := range recs {
		ch, ok, err := c.serde.DecodeDecisionChunk(r.Value)
		if err != nil || !ok {
			t.Fatalf("decisions %d@%d: chunk %v, %v", r.Partition, r.Offset, ok, err)
		}
		byPartition[r.Partition] = append(byPartition[r.Partition], ch)
	}
	for p, chs := range byPartition {
		after := ""
		for i, ch := range chs {
			if ch.After != after || len(ch.Users) > chunk || ch.Done != (i == len(chs)-1) {
				t.Errorf("partition %d chunk %d: after %q (want %q), %d users (at most %d), done %v", p, i, ch.After, after, len(ch.Users), chunk, ch.Done)
			}
			after = ch.Users[len(ch.Users)-1]
		}
	}

	run := func(args ...string) ([]byte, error) {
		args = append(args, "--brokers", strings.Join(c.brokers, ","), "--registry", c.registry, "--topic-prefix", c.prefix)
		out, err := exec.Command(bin, args...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return out, &cmdError{err: ee, stderr: string(ee.Stderr)}
		}
		return out, err
	}
	out, err := run("report", "--campaign", camp.CampaignID, "--inbox", "--json")
	if err != nil {
		t.Fatalf("sponsor report: %v", err)
	}
	var rep struct {
		Total struct {
			Delivered int64            `json:"delivered"`
			ByOutcome map[string]int64 `json:"by_outcome"`
		} `json:"total"`
		InboxRecords *int64 `json:"inbox_records"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report --json: %v\n%s", err, out)
	}
	if rep.Total.Delivered != int64(len(want)) || rep.InboxRecords == nil || *rep.InboxRecords != int64(len(want)) || rep.Total.ByOutcome["BLOCKED"] != contacts/5 {
		t.Errorf("report: delivered %d, inbox %v, by outcome %v; want %d delivered and in the inbox, %d BLOCKED", rep.Total.Delivered, rep.InboxRecords, rep.Total.ByOutcome, len(want), contacts/5)
	}
	for _, tc := range []struct {
		user, outcome string
	}{{userID(1), "DELIVERED"}, {userID(contacts - 1), "DELIVERED"}, {userID(5), "BLOCKED"}} {
		out, err := run("explain", "--campaign", camp.CampaignID, "--user", tc.user, "--group", c.group, "--json")
		if err != nil {
			t.Errorf("explain %s: %v", tc.user, err)
			continue
		}
		var ex struct {
			Outcome    string          `json:"outcome"`
			DeliveryID string          `json:"delivery_id"`
			Consistent bool            `json:"consistent"`
			Inbox      json.RawMessage `json:"inbox"`
		}
		if err := json.Unmarshal(out, &ex); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		if ex.Outcome != tc.outcome || !ex.Consistent || (ex.Inbox != nil) != (tc.outcome == "DELIVERED") || ex.DeliveryID != schemas.DeliveryID(camp.CampaignID, tc.user) {
			t.Errorf("explain %s: %s; want %s, consistent, the inbox record exactly when delivered, delivery id %s", tc.user, out, tc.outcome, schemas.DeliveryID(camp.CampaignID, tc.user))
		}
	}
}
