package jsonl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

func ptr(s string) *string { return &s }

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 250e6, time.UTC)

// TestRoundTrip marshals records covering every field, every enum symbol
// and both states of every optional field, parses the JSON back and wants
// the same record.
func TestRoundTrip(t *testing.T) {
	for i, kind := range schemas.InteractionKinds {
		in := schemas.Interaction{EventID: "ev-" + kind, UserID: "user-1", BusinessID: "biz-1", Kind: schemas.InteractionKind(i), OccurredAt: t0.Add(time.Duration(i) * time.Hour)}
		if in.Kind == schemas.UserErased {
			in.BusinessID = ""
		}
		b, err := MarshalInteraction(&in)
		if err != nil {
			t.Fatalf("MarshalInteraction(%+v): %v", in, err)
		}
		got, err := UnmarshalInteraction(b)
		if err != nil {
			t.Fatalf("UnmarshalInteraction(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("interaction round trip through %s:\n got %+v\nwant %+v", b, got, in)
		}
	}
	campaigns := []schemas.Campaign{
		{CampaignID: "c1", BusinessID: "b1", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0.Add(24 * time.Hour), Message: schemas.Message{Text: "plain"}},
		{
			CampaignID: "c2", BusinessID: "b2", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0,
			Audience: []schemas.AudienceRule{{Kind: schemas.UserMessage, WithinDays: 0}, {Kind: schemas.BotStarted, WithinDays: 30}, {Kind: schemas.BotCTAClick, WithinDays: 7}},
			Message:  schemas.Message{Text: "with \"cta\" ✓", CTALabel: ptr("Shop"), CTAURL: ptr("https://example.com/?a=1&b=2")},
		},
		{CampaignID: "c3", BusinessID: "b3", Action: schemas.Cancel, SendAt: time.UnixMilli(0).UTC(), ExpiresAt: t0, Message: schemas.Message{Text: "", CTALabel: ptr("only label")}},
		{CampaignID: "c4", BusinessID: "b4", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0, Message: schemas.Message{Text: "only url", CTAURL: ptr("")}},
	}
	for _, c := range campaigns {
		b, err := MarshalCampaign(&c)
		if err != nil {
			t.Fatalf("MarshalCampaign(%+v): %v", c, err)
		}
		got, err := UnmarshalCampaign(b)
		if err != nil {
			t.Fatalf("UnmarshalCampaign(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("campaign round trip through %s:\n got %+v\nwant %+v", b, got, c)
		}
	}
	inbox := []schemas.InboxMessage{
		{DeliveryID: "0123456789abcdef0123456789abcdef", UserID: "u1", BusinessID: "b1", CampaignID: "c1", SentAt: t0, Message: schemas.Message{Text: "hi"}},
		{DeliveryID: "d2", UserID: "u2", BusinessID: "b2", CampaignID: "c2", SentAt: t0, Message: schemas.Message{Text: "hi", CTALabel: ptr("Go"), CTAURL: ptr("https://x")}},
	}
	for _, m := range inbox {
		b, err := MarshalInbox(&m)
		if err != nil {
			t.Fatalf("MarshalInbox(%+v): %v", m, err)
		}
		got, err := UnmarshalInbox(b)
		if err != nil {
			t.Fatalf("UnmarshalInbox(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("inbox round trip through %s:\n got %+v\nwant %+v", b, got, m)
		}
	}
}

// TestMarshalShape pins the output shape: Avro field names in schema order,
// symbols, RFC 3339 UTC milliseconds, audience always an array, null CTAs.
func TestMarshalShape(t *testing.T) {
	in := schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.BotCTAClick, OccurredAt: t0}
	b, _ := MarshalInteraction(&in)
	if want := `{"event_id":"e","user_id":"u","business_id":"b","kind":"BOT_CTA_CLICK","occurred_at":"2025-06-01T12:00:00.250Z"}`; string(b) != want {
		t.Errorf("MarshalInteraction = %s\nwant %s", b, want)
	}
	c := schemas.Campaign{CampaignID: "c", BusinessID: "b", Action: schemas.Cancel, SendAt: t0, ExpiresAt: t0, Message: schemas.Message{Text: "t"}}
	b, _ = MarshalCampaign(&c)
	if want := `{"campaign_id":"c","business_id":"b","action":"CANCEL","send_at":"2025-06-01T12:00:00.250Z","expires_at":"2025-06-01T12:00:00.250Z","audience":[],"message":{"text":"t","cta_label":null,"cta_url":null}}`; string(b) != want {
		t.Errorf("MarshalCampaign = %s\nwant %s", b, want)
	}
}

// TestUnmarshalAccepts checks the input conveniences: epoch millis, other
// offsets, optional fields left out.
func TestUnmarshalAccepts(t *testing.T) {
	for _, tc := range []struct {
		line string
		want any
	}{
		{
			`{"event_id":"e","user_id":"u","business_id":"b","kind":"USER_MESSAGE","occurred_at":1748779200250}`,
			schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.UserMessage, OccurredAt: t0},
		},
		{
			`{"event_id":"e","user_id":"u","business_id":"b","kind":"BLOCK","occurred_at":"2025-06-01T14:00:00.25+02:00"}`,
			schemas.Interaction{EventID: "e", UserID: "u", BusinessID: "b", Kind: schemas.Block, OccurredAt: t0},
		},
		{
			`  {"event_id":"e","user_id":"u","kind":"USER_ERASED","occurred_at":"2025-06-01T12:00:00.250Z"}  `,
			schemas.Interaction{EventID: "e", UserID: "u", Kind: schemas.UserErased, OccurredAt: t0},
		},
		{
			`{"campaign_id":"c","business_id":"b","action":"LAUNCH","send_at":1748779200250,"expires_at":"2025-06-02T12:00:00.250Z","message":{"text":"hi"}}`,
			schemas.Campaign{CampaignID: "c", BusinessID: "b", Action: schemas.Launch, SendAt: t0, ExpiresAt: t0.Add(24 * time.Hour), Message: schemas.Message{Text: "hi"}},
		},
		// A CANCEL needs only the campaign and its business.
		{
			`{"campaign_id":"c","business_id":"b","action":"CANCEL"}`,
			schemas.Campaign{CampaignID: "c", BusinessID: "b", Action: schemas.Cancel, SendAt: time.UnixMilli(0).UTC(), ExpiresAt: time.UnixMilli(0).UTC()},
		},
		{
			`{"campaign_id":"c","business_id":"b","action":"CANCEL","send_at":1748779200250,"message":{"text":"hi"}}`,
			schemas.Campaign{CampaignID: "c", BusinessID: "b", Action: schemas.Cancel, SendAt: t0, ExpiresAt: time.UnixMilli(0).UTC(), Message: schemas.Message{Text: "hi"}},
		},
	} {
		var (
			got any
			err error
		)
		switch tc.want.(type) {
		case schemas.Interaction:
			got, err = UnmarshalInteraction([]byte(tc.line))
		case schemas.Campaign:
			got, err = UnmarshalCampaign([]byte(tc.line))
		}
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.line, got, tc.want)
		}
	}
}

// TestUnmarshalRejects lists bad values and the errors that name them.
func TestUnmarshalRejects(t *testing.T) {
	const (
		goodIn   = `"event_id":"e","user_id":"u","business_id":"b","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"`
		goodCamp = `"campaign_id":"c","business_id":"b","action":"LAUNCH","send_at":"2025-06-01T12:00:00Z","expires_at":"2025-06-01T13:00:00Z"`
	)
	for _, tc := range []struct {
		campaign bool
		line     string
		want     []string // each error, in order
	}{
		{false, `not json`, []string{"not JSON: invalid character 'o' in literal null (expecting 'u')"}},
		{false, `[1]`, []string{"want a JSON object, got an array"}},
		{false, `{"event_id":"e"} {}`, []string{"trailing data after the JSON object"}},
		{false, `{` + goodIn + `,"extra":1}`, []string{"field extra: unknown field"}},
		{false, `{` + goodIn + `,"user_id":"v"}`, []string{"field user_id: appears twice"}},
		{false, `{"event_id":"e","business_id":"b","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}`, []string{"field user_id: missing"}},
		{false, `{"event_id":"e","user_id":"","business_id":"b","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}`, []string{"field user_id: empty (the pipeline rejects the record)"}},
		{false, `{"event_id":"e","user_id":7,"business_id":"","kind":"CLICK","occurred_at":"yesterday"}`, []string{
			"field user_id: want a string, got 7",
			"field kind: unknown symbol \"CLICK\", want one of USER_MESSAGE, BOT_STARTED, BOT_CTA_CLICK, BUSINESS_MESSAGE, BLOCK, UNBLOCK, SPONSORED_OPT_OUT, SPONSORED_OPT_IN, USER_ERASED",
			"field occurred_at: want an RFC 3339 time (2025-06-01T12:00:00Z) or epoch milliseconds, got \"yesterday\"",
		}},
		{false, `{"event_id":"e","user_id":"u","business_id":"","kind":"BLOCK","occurred_at":1.5}`, []string{
			"field business_id: empty (the pipeline rejects the record)",
			"field occurred_at: want an RFC 3339 time or integer epoch milliseconds, got 1.5",
		}},
		{false, `{"event_id":"e","user_id":"u","business_id":"b","kind":"USER_ERASED","occurred_at":"2025-06-01T12:00:00.000001Z"}`, []string{
			"field business_id: must be empty for USER_ERASED, got \"b\"",
			"field occurred_at: \"2025-06-01T12:00:00.000001Z\" is finer than a millisecond (timestamp-millis)",
		}},
		{false, `{"event_id":"e","user_id":"u","business_id":"b","kind":"USER_MESSAGE","occurred_at":-5}`, []string{"field occurred_at: -5 is before the Unix epoch (1970-01-01T00:00:00Z)"}},
		{false, `{"event_id":"e","user_id":"u","business_id":"b","kind":"USER_MESSAGE","occurred_at":"1969-12-31T23:59:59Z"}`, []string{"field occurred_at: \"1969-12-31T23:59:59Z\" is before the Unix epoch (1970-01-01T00:00:00Z)"}},
		{false, `{"event_id":null,"user_id":"u","business_id":"b","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}`, []string{"field event_id: null, want a value"}},
		{true, `{` + goodCamp + `}`, []string{"field message: missing"}},
		{true, `{"campaign_id":"c","action":"CANCEL","extra":1}`, []string{"field business_id: missing", "field extra: unknown field"}},
		{true, `{"campaign_id":"c","business_id":"b","action":"START","send_at":"2025-06-01T12:00:00Z","expires_at":"2025-06-01T11:00:00Z","message":{"text":"t"}}`, []string{
			"field action: unknown symbol \"START\", want one of LAUNCH, CANCEL",
			"field expires_at: 2025-06-01T11:00:00.000Z is before send_at 2025-06-01T12:00:00.000Z (the pipeline rejects the campaign)",
		}},
		{true, `{` + goodCamp + `,"audience":[{"kind":"BLOCK","within_days":-1},{"kind":"BOT_STARTED"},{"kind":"BOT_STARTED","within_days":7,"x":0},3],"message":{"text":"t"}}`, []string{
			"field audience[0].kind: unknown symbol \"BLOCK\", want one of USER_MESSAGE, BOT_STARTED, BOT_CTA_CLICK",
			"field audience[0].within_days: negative: -1 (0 means ever)",
			"field audience[1].within_days: missing",
			"field audience[2].x: unknown field",
			"field audience[3]: want a JSON object, got 3",
		}},
		{true, `{` + goodCamp + `,"audience":{},"message":{"text":1,"cta_url":false,"color":"red"}}`, []string{
			"field audience: want an array, got an object",
			"field message.text: want a string, got 1",
			"field message.cta_url: want a string or null, got a boolean",
			"field message.color: unknown field",
		}},
		{true, `{` + goodCamp + `,"audience":[{"kind":"USER_MESSAGE","within_days":3000000000}],"message":"hi"}`, []string{
			"field audience[0].within_days: want an integer from 0 (ever) to 2147483647, got 3000000000",
			"field message: want a JSON object, got a string",
		}},
	} {
		var err error
		if tc.campaign {
			_, err = UnmarshalCampaign([]byte(tc.line))
		} else {
			_, err = UnmarshalInteraction([]byte(tc.line))
		}
		var es Errors
		if !errors.As(err, &es) {
			t.Errorf("%s: got error %v, want Errors", tc.line, err)
			continue
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Error())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
}

// TestReadAllOrNothing checks that one bad line among good ones gives no
// records and every problem with its file name and line number, and that
// blank lines are skipped but counted.
func TestReadAllOrNothing(t *testing.T) {
	good := `{"event_id":"e1","user_id":"u1","business_id":"b","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}`
	input := strings.Join([]string{
		good,
		"",
		`{"event_id":"e2","user_id":"u2","business_id":"b","kind":"USER_MESAGE","occurred_at":"2025-06-01T12:00:00Z"}`,
		good,
		`{"event_id":"e4","user_id":"u4","business_id":"b","kind":"BLOCK"}`,
	}, "\n")
	recs, err := ReadInteractions(strings.NewReader(input), "events.jsonl")
	if recs != nil {
		t.Errorf("ReadInteractions returned %d records along with bad lines, want none", len(recs))
	}
	want := "events.jsonl:3: field kind: unknown symbol \"USER_MESAGE\", want one of USER_MESSAGE, BOT_STARTED, BOT_CTA_CLICK, BUSINESS_MESSAGE, BLOCK, UNBLOCK, SPONSORED_OPT_OUT, SPONSORED_OPT_IN, USER_ERASED\n" +
		"events.jsonl:5: field occurred_at: missing"
	if err == nil || err.Error() != want {
		t.Errorf("ReadInteractions error:\n got %v\nwant %s", err, want)
	}

	recs, err = ReadInteractions(strings.NewReader(good+"\n\n"+good+"\n"), "ok.jsonl")
	if err != nil || len(recs) != 2 {
		t.Errorf("ReadInteractions of two good lines = %d records, %v; want 2, nil", len(recs), err)
	}
	if _, err := ReadInteractions(strings.NewReader(strings.Repeat("x", MaxLine+1)), "long"); err == nil || !strings.Contains(err.Error(), "long:1: line longer than") {
		t.Errorf("ReadInteractions of a too long line: %v, want long:1: line longer than ...", err)
	}
}
