package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/topics"
)

// TestDecodeClockSkew: an interaction more than MaxClockSkew ahead of its
// record's timestamp or of the wall clock is dead-lettered with the reason
// clock-skew and a message naming both times; one just inside the skew is
// processed; a negative skew turns the check off.
func TestDecodeClockSkew(t *testing.T) {
	e := testEnv(t, 1, topics.Murmur2)
	names, serde := e.names, e.serde
	stamp := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const skew = 5 * time.Minute
	for _, tc := range []struct {
		name       string
		skew       time.Duration
		occurredAt time.Time
		wall       time.Time
		rejected   bool
	}{
		{"at the record's timestamp", skew, stamp, stamp, false},
		{"just inside the skew", skew, stamp.Add(skew), stamp.Add(time.Hour), false},
		{"just beyond the skew of the timestamp", skew, stamp.Add(skew + time.Millisecond), stamp.Add(time.Hour), true},
		{"hours ahead", skew, stamp.Add(30 * time.Hour), stamp.Add(time.Hour), true},
		{"beyond the skew of the wall clock", skew, stamp.Add(skew + time.Millisecond), stamp, true},
		{"just inside the skew of the wall clock", skew, stamp.Add(skew), stamp, false},
		{"long ago", skew, stamp.Add(-400 * 24 * time.Hour), stamp, false},
		{"check off", -1, stamp.Add(30 * time.Hour), stamp, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ec := *e
			ec.skew = tc.skew.Milliseconds()
			tk := &task{env: &ec, wall: policy.ToMillis(tc.wall)}
			v, err := serde.AppendInteraction(nil, &schemas.Interaction{EventID: "e", UserID: "u1", BusinessID: "b1", Kind: schemas.UserMessage, OccurredAt: tc.occurredAt})
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Topic: names.Interactions, Key: []byte("u1"), Value: v, Timestamp: stamp, Offset: 7}
			_, reason, err := tk.decode(r)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.rejected {
				if reason != "" || len(tk.out) != 0 {
					t.Fatalf("reason %q, %d dead letters; want it processed", reason, len(tk.out))
				}
				return
			}
			if reason != deadletter.ReasonClockSkew || len(tk.out) != 1 || tk.counts.deadLetterReasons[string(deadletter.ReasonClockSkew)] != 1 {
				t.Fatalf("reason %q, %d dead letters, counted %v; want one %s", reason, len(tk.out), tk.counts.deadLetterReasons, deadletter.ReasonClockSkew)
			}
			dl := tk.out[0]
			var msg string
			for _, h := range dl.Headers {
				if h.Key == deadletter.HeaderReason && deadletter.Reason(h.Value) != deadletter.ReasonClockSkew {
					t.Errorf("reason header %q", h.Value)
				}
				if strings.HasSuffix(h.Key, "exception.message") {
					msg = string(h.Value)
				}
			}
			for _, want := range []string{fmtMillis(policy.ToMillis(tc.occurredAt)), fmtMillis(policy.ToMillis(stamp)), fmtMillis(policy.ToMillis(tc.wall))} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not name %s", msg, want)
				}
			}
			if string(dl.Value) != string(v) || dl.Topic != names.DeadLetter {
				t.Errorf("dead letter to %s with other bytes than the record's", dl.Topic)
			}
		})
	}
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
