package deadletter_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/deadletter"
)

// TestNewHeaders pins the header bytes of a dead letter: tooling outside
// the project reads them.
func TestNewHeaders(t *testing.T) {
	src := &kgo.Record{Topic: "interactions", Partition: 3, Offset: 41, Key: []byte("u1"), Value: []byte{0, 1, 2}}
	dl := deadletter.New("deadletter", src, deadletter.ReasonMisroutedKey, errors.New("key is not the user"))
	if dl.Topic != "deadletter" || string(dl.Key) != "u1" || string(dl.Value) != "\x00\x01\x02" {
		t.Fatalf("dead letter %s key %q value %q, want deadletter, the source's key and value", dl.Topic, dl.Key, dl.Value)
	}
	want := []kgo.RecordHeader{
		{Key: "__connect.errors.topic", Value: []byte("interactions")},
		{Key: "__connect.errors.partition", Value: []byte("3")},
		{Key: "__connect.errors.offset", Value: []byte("41")},
		{Key: "__connect.errors.exception.class.name", Value: []byte("sponsor.misrouted-key")},
		{Key: "__connect.errors.exception.message", Value: []byte("key is not the user")},
		{Key: "sponsor.errors.reason", Value: []byte("misrouted-key")},
	}
	if !slices.EqualFunc(dl.Headers, want, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
		t.Errorf("headers %q, want %q", dl.Headers, want)
	}
	if msg := deadletter.Parse(deadletter.New("dl", src, deadletter.ReasonClockSkew, nil)).Message; msg != "clock-skew" {
		t.Errorf("message without an error = %q, want the reason", msg)
	}
}

func TestParseRoundTrip(t *testing.T) {
	src := &kgo.Record{Topic: "interactions", Partition: 2, Offset: 7, Key: []byte("u1")}
	got := deadletter.Parse(deadletter.NewWrongPartition("dl", src, 5, errors.New("maps to 5")))
	want := deadletter.Letter{Topic: "interactions", Partition: 2, Offset: 7, Reason: deadletter.ReasonWrongPartition, Message: "maps to 5", Expected: 5}
	if got != want {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

func TestParseMissingOrBad(t *testing.T) {
	r := &kgo.Record{Headers: []kgo.RecordHeader{
		{Key: deadletter.HeaderPartition, Value: []byte("-1")},
		{Key: deadletter.HeaderOffset, Value: []byte("x")},
		{Key: deadletter.HeaderExpectedPartition, Value: []byte("99999999999")},
		{Key: "trace-id", Value: []byte("abc")},
	}}
	want := deadletter.Letter{Partition: -1, Offset: -1, Expected: -1}
	if got := deadletter.Parse(r); got != want {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

func TestIsHeader(t *testing.T) {
	dl := deadletter.NewWrongPartition("dl", &kgo.Record{}, 1, nil)
	for _, h := range dl.Headers {
		if !deadletter.IsHeader(h.Key) {
			t.Errorf("IsHeader(%q) = false for a header New adds", h.Key)
		}
	}
	for _, k := range []string{"trace-id", "__connect.other", "sponsor.trace"} {
		if deadletter.IsHeader(k) {
			t.Errorf("IsHeader(%q) = true, want false", k)
		}
	}
}

func TestReasonsDistinct(t *testing.T) {
	rs := deadletter.Reasons()
	seen := map[deadletter.Reason]bool{}
	for _, r := range rs {
		if r == "" || seen[r] {
			t.Errorf("reason %q empty or listed twice", r)
		}
		seen[r] = true
	}
}
