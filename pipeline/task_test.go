package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// The task's own tests: what it does with records. What the partition
// decides (lateness, erasure, firing) is tested in package policy, over the
// same store.

func launch(id, biz string, send time.Time) *schemas.Campaign {
	return &schemas.Campaign{CampaignID: id, BusinessID: biz, Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(48 * time.Hour), Message: schemas.Message{Text: "hi " + id}}
}

// campaignRec returns the record of campaign c, keyed by its id.
func campaignRec(t testing.TB, e *env, c *schemas.Campaign) *kgo.Record {
	t.Helper()
	v, err := e.serde.AppendCampaign(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: e.names.Campaigns, Key: []byte(c.CampaignID), Value: v}
}

// TestNoRecordTimestamp: a record without a timestamp (Kafka's
// NO_TIMESTAMP, -1, from a producer of the message format before 0.10) is
// judged by the wall clock alone, not dead-lettered for its clock.
func TestNoRecordTimestamp(t *testing.T) {
	e := testEnv(t, 1, topics.Murmur2)
	e.skew = (5 * time.Minute).Milliseconds()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tk := &task{env: e, wall: policy.ToMillis(now)}
	r := interaction(t, e, "u1", "b1", schemas.UserMessage, now.Add(-time.Hour), 0)
	r.Timestamp = time.UnixMilli(-1)
	_, reason, err := tk.decode(r)
	if err != nil {
		t.Fatal(err)
	}
	if reason != "" {
		t.Errorf("an hour-old interaction without a record timestamp: dead letter %q", reason)
	}
}

// TestApplyCampaignDeadLetters: the campaign records a task cannot accept
// are dead-lettered by task 0 only, each with its reason: the record's
// own faults (decodeCampaign) and the partition's Invalid verdict. A good
// one is admitted by every task.
func TestApplyCampaignDeadLetters(t *testing.T) {
	e := testEnv(t, 2, topics.Murmur2)
	send := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := launch("c1", "b1", send)
	expired := launch("c2", "b1", send)
	expired.ExpiresAt = send.Add(-time.Minute)
	misrouted := campaignRec(t, e, launch("c3", "b1", send))
	misrouted.Key = []byte("other")
	noBusiness := launch("c4", "", send)
	recs := []*kgo.Record{campaignRec(t, e, good), campaignRec(t, e, expired), misrouted, campaignRec(t, e, noBusiness), {Topic: e.names.Campaigns, Value: []byte{0xff}}}
	want := []string{ReasonCampaignExpiresBeforeSend, ReasonMisroutedKey, ReasonEmptyBusinessID}
	for p := range int32(2) {
		tk := newTestTask(t, e, p)
		for _, r := range recs {
			if err := tk.applyCampaign(r); err != nil {
				t.Fatalf("task %d: %v", p, err)
			}
		}
		if c := tk.part.Campaign("c1"); c == nil || c.Status != policy.Pending {
			t.Errorf("task %d: c1 %+v, want pending", p, c)
		}
		if p != 0 {
			if len(tk.records()) != 0 {
				t.Errorf("task %d wrote %d dead letters; only task 0 writes them", p, len(tk.records()))
			}
			continue
		}
		var got []string
		for _, r := range tk.records() {
			reason, _ := headerOf(r, HeaderReason)
			got = append(got, reason)
		}
		if len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
			t.Errorf("task 0 dead letters with reasons %q, want %q and the undecodable record's", got, want)
		}
	}
}
