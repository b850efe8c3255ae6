package wire_test

import (
	"bytes"
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

// templateIDs are (delivery id, user id) pairs around the one-byte/two-byte
// boundary of a length's varint.
var templateIDs = [][2]string{
	{"", ""},
	{"3f9a0c1e5b7d2a4c6e8f0a1b2c3d4e5f", "user-0123456"},
	{strings.Repeat("d", 63), strings.Repeat("u", 64)},
	{strings.Repeat("d", 200), "ü"},
}

// TestInboxTemplate checks that a template encodes each inbox record byte for
// byte as the library does, with and without the message's optional fields.
func TestInboxTemplate(t *testing.T) {
	_, rc := newRegistry(t)
	s := newSerde(t, rc)
	for _, msg := range []schemas.Message{
		{Text: "Spring sale"},
		{Text: strings.Repeat("x", 500), CTALabel: ptr("Shop"), CTAURL: ptr("https://example.com")},
		{CTAURL: ptr("")},
	} {
		m := schemas.InboxMessage{DeliveryID: "ignored", UserID: "ignored", BusinessID: "biz-42", CampaignID: "camp-1", SentAt: ms(1_767_225_600_000), Message: msg}
		tpl, err := s.InboxTemplate(&m)
		if err != nil {
			t.Fatalf("InboxTemplate: %v", err)
		}
		for _, ids := range templateIDs {
			m.DeliveryID, m.UserID = ids[0], ids[1]
			want, err := s.AppendInbox(nil, &m)
			if err != nil {
				t.Fatalf("AppendInbox: %v", err)
			}
			prefix := []byte("kept")
			got := tpl.Append(prefix, ids[0], ids[1])
			if !bytes.Equal(got[:4], []byte("kept")) || !bytes.Equal(got[4:], want) {
				t.Errorf("template of %+v for %q, %q:\n got  % x\n want kept % x", msg, ids[0], ids[1], got, want)
			}
			back, err := s.DecodeInbox(got[4:])
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Errorf("decode of the template's record: %+v, %v; want %+v", back, err, m)
			}
		}
	}
}

// TestDecisionChunkTemplate checks the chunk template against the library,
// chunk by chunk: every outcome, lengths around a varint's one-byte/two-byte
// boundary, first and last chunks; and that it refuses what has no record.
func TestDecisionChunkTemplate(t *testing.T) {
	_, rc := newRegistry(t)
	s, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox", Decisions: "decisions"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := schemas.DecisionChunk{BusinessID: "biz-42", CampaignID: "camp-1", DecidedAsOf: ms(1_767_225_600_000), Partition: 70}
	tpl, err := s.DecisionChunkTemplate(&c)
	if err != nil {
		t.Fatalf("DecisionChunkTemplate: %v", err)
	}
	for _, n := range []int{1, 8, 63, 64, 65, 300} {
		for _, ids := range templateIDs {
			c.After, c.Done = ids[0], n%2 == 1
			c.Users, c.Outcomes = nil, nil
			for i := range n {
				c.Users = append(c.Users, ids[1]+strconv.Itoa(i))
				c.Outcomes = append(c.Outcomes, schemas.Outcome(i%len(schemas.Outcomes)))
			}
			want, err := s.AppendDecisionChunk(nil, &c)
			if err != nil {
				t.Fatalf("AppendDecisionChunk: %v", err)
			}
			got, err := tpl.Append([]byte("kept"), c.After, c.Done, c.Users, c.Outcomes)
			if err != nil || !bytes.Equal(got[:4], []byte("kept")) || !bytes.Equal(got[4:], want) {
				t.Fatalf("template of %d users after %q: %v\n got  % x\n want kept % x", n, c.After, err, got, want)
			}
			back, chunk, err := s.DecodeDecisionChunk(got[4:])
			if err != nil || !chunk || !reflect.DeepEqual(back, c) {
				t.Fatalf("decode of the template's record: %+v, %v, %v; want %+v", back, chunk, err, c)
			}
		}
	}
	for _, bad := range []struct {
		users    []string
		outcomes []schemas.Outcome
	}{
		{nil, nil},
		{[]string{"u1"}, nil},
		{[]string{"u1"}, []schemas.Outcome{schemas.Delivered, schemas.Blocked}},
		{[]string{"u1"}, []schemas.Outcome{schemas.Outcome(len(schemas.Outcomes))}},
	} {
		if got, err := tpl.Append([]byte("kept"), "", false, bad.users, bad.outcomes); err == nil || string(got) != "kept" {
			t.Errorf("Append(%q, %v) = % x, %v; want dst unchanged and an error", bad.users, bad.outcomes, got, err)
		}
	}
	// Without a decisions topic there is nothing to template.
	if _, err := newSerde(t, rc).DecisionChunkTemplate(&c); err == nil {
		t.Error("DecisionChunkTemplate on a Serde without Topics.Decisions: want an error")
	}
}
