package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// testEnv returns the env of tasks of an interactions topic of n partitions
// placed by part, on a fresh store and an in-process registry.
func testEnv(t testing.TB, n int32, part topics.Partitioner) *env {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	rc, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	names := topics.NewNames("", "sponsor")
	serde, err := wire.New(context.Background(), rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox, Decisions: names.Decisions})
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(filepath.Join(t.TempDir(), "pebble"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pol, err := policy.New(policy.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &env{names: names, policy: pol, serde: serde, store: store, chunk: 5000, partitions: n, partitioner: part}
}

// newTestTask returns task p of e, loaded and in a transaction.
func newTestTask(t testing.TB, e *env, p int32) *task {
	t.Helper()
	tk := &task{p: p, env: e}
	if err := tk.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	tk.begin(tk.wall)
	t.Cleanup(func() { tk.batch.Close() })
	return tk
}

// interaction returns the record of an interaction of user on partition p.
func interaction(t testing.TB, e *env, user, biz string, kind schemas.InteractionKind, at time.Time, p int32) *kgo.Record {
	t.Helper()
	v, err := e.serde.AppendInteraction(nil, &schemas.Interaction{EventID: fmt.Sprintf("%s-%s-%d", user, kind, at.UnixMilli()), UserID: user, BusinessID: biz, Kind: kind, OccurredAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: e.names.Interactions, Partition: p, Key: []byte(user), Value: v}
}

// userOn returns a user whose key maps to partition p under e's partitioner.
func userOn(e *env, prefix string, p int32) string {
	for i := 0; ; i++ {
		if u := fmt.Sprintf("%s-%d", prefix, i); e.partitioner.Partition([]byte(u), e.partitions) == p {
			return u
		}
	}
}

func headerOf(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestWrongPartition: under either partitioner, an interaction on a
// partition other than the one its key maps to is dead-lettered with both
// partitions named and is not applied (no contact in the task that read it,
// so its campaign reaches nobody there, and no opt-out either), while the
// same interaction on its own partition is processed.
func TestWrongPartition(t *testing.T) {
	const n = 4
	send := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	camp := schemas.Campaign{CampaignID: "camp-1", BusinessID: "biz", Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour), Message: schemas.Message{Text: "hi"}}
	type rec struct {
		kind     schemas.InteractionKind
		h        float64 // hours before the send time
		misroute bool    // on the next partition instead of the user's
	}
	for _, part := range topics.Partitioners() {
		for _, tc := range []struct {
			name      string
			recs      []rec
			delivered bool // to the user, by the user's own task
			wrong     int  // wrong-partition dead letters
		}{
			{"first contact on its partition", []rec{{schemas.UserMessage, 2, false}}, true, 0},
			{"first contact on another partition", []rec{{schemas.UserMessage, 2, true}}, false, 1},
			{"opt-out on its partition", []rec{{schemas.UserMessage, 2, false}, {schemas.SponsoredOptOut, 1, false}}, false, 0},
			{"opt-out on another partition", []rec{{schemas.UserMessage, 2, false}, {schemas.SponsoredOptOut, 1, true}}, true, 1},
			{"block on another partition", []rec{{schemas.BotStarted, 2, false}, {schemas.Block, 1, true}}, true, 1},
		} {
			t.Run(string(part)+"/"+tc.name, func(t *testing.T) {
				e := testEnv(t, n, part)
				user := userOn(e, "user", 1)
				own, other := int32(1), int32(2)
				tasks := map[int32]*task{own: newTestTask(t, e, own), other: newTestTask(t, e, other)}
				batches := map[int32][]*kgo.Record{}
				for _, r := range tc.recs {
					p := own
					if r.misroute {
						p = other
					}
					batches[p] = append(batches[p], interaction(t, e, user, camp.BusinessID, r.kind, send.Add(-time.Duration(r.h*float64(time.Hour))), p))
				}
				for p, tk := range tasks {
					if err := tk.applyCampaign(campaignRec(t, e, &camp)); err != nil {
						t.Fatal(err)
					}
					// A later interaction of another user of the partition
					// fires the campaign by stream time.
					recs := append(batches[p], interaction(t, e, userOn(e, "later", p), "other-biz", schemas.UserMessage, send.Add(time.Minute), p))
					for i, r := range recs {
						r.Offset = int64(i)
					}
					if done, err := tk.process(recs); err != nil || done != len(recs) {
						t.Fatalf("task %d: process = %d, %v; want %d, nil", p, done, err, len(recs))
					}
					if tk.part.Input() != int64(len(recs)) {
						t.Errorf("task %d: input offset %d after its batch, want %d (a dead letter is consumed too)", p, tk.part.Input(), len(recs))
					}
				}

				var inbox, wrong []*kgo.Record
				for p, tk := range tasks {
					for _, r := range tk.out {
						switch {
						case r.Topic == e.names.Inbox && string(r.Key) == user:
							if p != own {
								t.Errorf("task %d delivered to %s, whose partition is %d", p, user, own)
							}
							inbox = append(inbox, r)
						case r.Topic == e.names.DeadLetter:
							if reason, _ := headerOf(r, deadletter.HeaderReason); deadletter.Reason(reason) != deadletter.ReasonWrongPartition {
								t.Errorf("task %d: dead letter with reason %q, want %q", p, reason, deadletter.ReasonWrongPartition)
							}
							wrong = append(wrong, r)
						}
					}
					if got := tk.counts.deadLetterReasons[string(deadletter.ReasonWrongPartition)]; p == other && got != int64(tc.wrong) {
						t.Errorf("task %d counted %d wrong-partition dead letters, want %d", p, got, tc.wrong)
					}
					// The task that read the misplaced record keeps nothing
					// of the user.
					if p == other {
						if _, known, err := tk.batch.Contact(user, camp.BusinessID); err != nil || known {
							t.Errorf("task %d has a contact of %s with %s (err %v): the misplaced record was applied", p, user, camp.BusinessID, err)
						}
					}
				}
				if got := len(inbox) == 1; got != tc.delivered || len(inbox) > 1 {
					t.Errorf("%d inbox records for %s, want delivered=%v", len(inbox), user, tc.delivered)
				}
				if len(wrong) != tc.wrong {
					t.Fatalf("%d wrong-partition dead letters, want %d", len(wrong), tc.wrong)
				}
				for _, dl := range wrong {
					for h, want := range map[string]string{
						deadletter.HeaderTopic:             e.names.Interactions,
						deadletter.HeaderPartition:         strconv.Itoa(int(other)),
						deadletter.HeaderExpectedPartition: strconv.Itoa(int(own)),
						deadletter.HeaderOffset:            "0",
						deadletter.HeaderClass:             "sponsor." + string(deadletter.ReasonWrongPartition),
					} {
						if got, _ := headerOf(dl, h); got != want {
							t.Errorf("dead letter header %s = %q, want %q", h, got, want)
						}
					}
					msg, _ := headerOf(dl, deadletter.HeaderMessage)
					for _, want := range []string{fmt.Sprintf("partition %d", own), fmt.Sprintf("partition %d", other), string(part)} {
						if !strings.Contains(msg, want) {
							t.Errorf("dead letter message %q does not name %q", msg, want)
						}
					}
					if string(dl.Key) != user || dl.Value == nil {
						t.Errorf("dead letter key %q, want the original %q and its value", dl.Key, user)
					}
				}
			})
		}
	}
}

// BenchmarkPartitionCheck measures what the partition check adds to the
// decoding of each interaction: the check alone (hash the key, compare),
// and decode with it (decode) and without it (decodeValue), on a record on
// its partition.
func BenchmarkPartitionCheck(b *testing.B) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, part := range topics.Partitioners() {
		e := testEnv(b, 24, part)
		tk := newTestTask(b, e, 0)
		user := userOn(e, "user-0012345", 0)
		r := interaction(b, e, user, "biz-00042", schemas.UserMessage, at, 0)
		b.Run("check/"+string(part), func(b *testing.B) {
			b.ReportAllocs()
			wrong := 0
			for b.Loop() {
				if e.partitioner.Partition(r.Key, e.partitions) != r.Partition {
					wrong++
				}
			}
			if wrong != 0 {
				b.Fatal("the record is on its partition")
			}
		})
		b.Run("decode/"+string(part), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, reason, err := tk.decode(r); reason != "" || err != nil {
					b.Fatal(reason, err)
				}
			}
		})
	}
	e := testEnv(b, 24, topics.Murmur2)
	tk := newTestTask(b, e, 0)
	r := interaction(b, e, userOn(e, "user-0012345", 0), "biz-00042", schemas.UserMessage, at, 0)
	b.Run("decode/unchecked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, reason, err := tk.decodeValue(r); reason != "" || err != nil {
				b.Fatal(reason, err)
			}
		}
	})
}

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
	want := []string{string(deadletter.ReasonCampaignExpiresBeforeSend), string(deadletter.ReasonMisroutedKey), string(deadletter.ReasonEmptyBusinessID)}
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
			reason, _ := headerOf(r, deadletter.HeaderReason)
			got = append(got, reason)
		}
		if len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) {
			t.Errorf("task 0 dead letters with reasons %q, want %q and the undecodable record's", got, want)
		}
	}
}
