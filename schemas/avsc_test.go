package schemas_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/sponsored/sponsor/schemas"
)

// avroNode is the part of an Avro schema's JSON the contract fixes.
type avroNode struct {
	Type        any         `json:"type"`
	Name        string      `json:"name"`
	Namespace   string      `json:"namespace"`
	Doc         string      `json:"doc"`
	Fields      []avroField `json:"fields"`
	Symbols     []string    `json:"symbols"`
	Items       any         `json:"items"`
	LogicalType string      `json:"logicalType"`
}

type avroField struct {
	Name    string          `json:"name"`
	Type    json.RawMessage `json:"type"`
	Doc     string          `json:"doc"`
	Default json.RawMessage `json:"default"`
}

// TestEmbeddedSchemas checks the .avsc files against DESIGN.md's contract:
// they parse with goavro (an implementation other than the serde's), and
// have the contract's records, fields, field types, enum symbols and docs.
func TestEmbeddedSchemas(t *testing.T) {
	timestamp := `{"type":"long","logicalType":"timestamp-millis"}`
	message := map[string]string{
		"text":      `"string"`,
		"cta_label": `["null","string"]`,
		"cta_url":   `["null","string"]`,
	}
	for _, tc := range []struct {
		file, schema, name string
		fields             []string          // in order
		types              map[string]string // JSON of the field's type; records and enums are checked below
		enums              map[string][]string
	}{
		{
			file: "interaction.avsc", schema: schemas.InteractionSchema(), name: "Interaction",
			fields: []string{"event_id", "user_id", "business_id", "kind", "occurred_at"},
			types:  map[string]string{"event_id": `"string"`, "user_id": `"string"`, "business_id": `"string"`, "occurred_at": timestamp},
			enums:  map[string][]string{"kind": schemas.InteractionKinds[:]},
		},
		{
			file: "campaign.avsc", schema: schemas.CampaignSchema(), name: "Campaign",
			fields: []string{"campaign_id", "business_id", "action", "send_at", "expires_at", "audience", "message"},
			types:  map[string]string{"campaign_id": `"string"`, "business_id": `"string"`, "send_at": timestamp, "expires_at": timestamp},
			enums:  map[string][]string{"action": {schemas.Launch.String(), schemas.Cancel.String()}},
		},
		{
			file: "inbox.avsc", schema: schemas.InboxSchema(), name: "InboxMessage",
			fields: []string{"delivery_id", "user_id", "business_id", "campaign_id", "sent_at", "message"},
			types:  map[string]string{"delivery_id": `"string"`, "user_id": `"string"`, "business_id": `"string"`, "campaign_id": `"string"`, "sent_at": timestamp},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if _, err := goavro.NewCodec(tc.schema); err != nil {
				t.Fatalf("goavro cannot parse %s: %v", tc.file, err)
			}
			var rec avroNode
			if err := json.Unmarshal([]byte(tc.schema), &rec); err != nil {
				t.Fatalf("unmarshal %s: %v", tc.file, err)
			}
			if rec.Type != "record" || rec.Name != tc.name || rec.Namespace != "sponsor.v1" {
				t.Fatalf("%s: got %v %s.%s, want record sponsor.v1.%s", tc.file, rec.Type, rec.Namespace, rec.Name, tc.name)
			}
			fields := checkFields(t, tc.file, rec, tc.fields)
			for name, want := range tc.types {
				checkJSON(t, tc.file+" field "+name, fields[name].Type, want)
			}
			for name, want := range tc.enums {
				checkEnum(t, tc.file+" field "+name, fields[name].Type, want)
			}
			if f, ok := fields["message"]; ok {
				var msg avroNode
				mustUnmarshal(t, f.Type, &msg)
				if msg.Name != "Message" {
					t.Errorf("%s: message type is %q, want record Message", tc.file, msg.Name)
				}
				mf := checkFields(t, tc.file+" Message", msg, []string{"text", "cta_label", "cta_url"})
				for name, want := range message {
					checkJSON(t, tc.file+" Message."+name, mf[name].Type, want)
				}
				for _, name := range []string{"cta_label", "cta_url"} {
					if string(mf[name].Default) != "null" {
						t.Errorf("%s: Message.%s default: got %s, want null", tc.file, name, mf[name].Default)
					}
				}
			}
			if f, ok := fields["audience"]; ok {
				var arr avroNode
				mustUnmarshal(t, f.Type, &arr)
				items, _ := json.Marshal(arr.Items)
				var rule avroNode
				mustUnmarshal(t, items, &rule)
				if arr.Type != "array" || rule.Name != "AudienceRule" {
					t.Fatalf("%s: audience: got %v of %q, want array of record AudienceRule", tc.file, arr.Type, rule.Name)
				}
				rf := checkFields(t, tc.file+" AudienceRule", rule, []string{"kind", "within_days"})
				checkEnum(t, tc.file+" AudienceRule.kind", rf["kind"].Type, []string{"USER_MESSAGE", "BOT_STARTED", "BOT_CTA_CLICK"})
				checkJSON(t, tc.file+" AudienceRule.within_days", rf["within_days"].Type, `"int"`)
			}
		})
	}
}

// checkFields checks a record's field names (in order) and that each has a
// doc, and returns the fields by name.
func checkFields(t *testing.T, what string, rec avroNode, want []string) map[string]avroField {
	t.Helper()
	var got []string
	byName := map[string]avroField{}
	for _, f := range rec.Fields {
		got = append(got, f.Name)
		byName[f.Name] = f
		if f.Doc == "" {
			t.Errorf("%s: field %s has no doc", what, f.Name)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s fields:\n got  %q\n want %q", what, got, want)
	}
	return byName
}

func checkJSON(t *testing.T, what string, raw json.RawMessage, want string) {
	t.Helper()
	var g, w any
	mustUnmarshal(t, raw, &g)
	mustUnmarshal(t, []byte(want), &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s type: got %s, want %s", what, raw, want)
	}
}

func checkEnum(t *testing.T, what string, raw json.RawMessage, want []string) {
	t.Helper()
	var e avroNode
	mustUnmarshal(t, raw, &e)
	if e.Type != "enum" || !reflect.DeepEqual(e.Symbols, want) {
		t.Errorf("%s: got %v with symbols %q, want enum with %q", what, e.Type, e.Symbols, want)
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
}
