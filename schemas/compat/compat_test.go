package compat

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sponsored/sponsor/schemas"
)

// edit returns the schema text with f applied to its decoded JSON.
func edit(t *testing.T, text string, f func(rec map[string]any)) string {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal([]byte(text), &rec); err != nil {
		t.Fatal(err)
	}
	f(rec)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fields(rec map[string]any) []any { return rec["fields"].([]any) }

func field(rec map[string]any, name string) map[string]any {
	for _, f := range fields(rec) {
		if m := f.(map[string]any); m["name"] == name {
			return m
		}
	}
	panic("no field " + name)
}

func removeField(rec map[string]any, name string) {
	var keep []any
	for _, f := range fields(rec) {
		if f.(map[string]any)["name"] != name {
			keep = append(keep, f)
		}
	}
	rec["fields"] = keep
}

func addField(rec map[string]any, f string) {
	var m map[string]any
	if err := json.Unmarshal([]byte(f), &m); err != nil {
		panic(err)
	}
	rec["fields"] = append(fields(rec), m)
}

// TestCheck runs each kind of change against the embedded schemas and wants
// exactly the listed problems (direction and path), none for a compatible
// change.
func TestCheck(t *testing.T) {
	in, camp := schemas.InteractionSchema(), schemas.CampaignSchema()
	for _, tc := range []struct {
		name    string
		current string
		change  func(map[string]any)
		want    []string // "DIRECTION path", in order
		explain string   // a word the first explanation must contain
	}{
		{name: "unchanged", current: in, change: func(map[string]any) {}},
		{name: "add optional field with default", current: in, change: func(r map[string]any) {
			addField(r, `{"name":"channel","type":["null","string"],"default":null}`)
		}},
		{name: "add field with non-null default", current: camp, change: func(r map[string]any) {
			addField(r, `{"name":"priority","type":"int","default":0}`)
		}},
		{name: "add optional field inside nested record", current: camp, change: func(r map[string]any) {
			msg := field(r, "message")["type"].(map[string]any)
			addField(msg, `{"name":"image_url","type":["null","string"],"default":null}`)
		}},
		{name: "promote int to long is forward only breaking", current: camp, change: func(r map[string]any) {
			rule := field(r, "audience")["type"].(map[string]any)["items"].(map[string]any)
			field(rule, "within_days")["type"] = "long"
		}, want: []string{"FORWARD Campaign.audience.items.within_days"}, explain: "changes from int (current) to long (new)"},
		{name: "remove required field", current: in, change: func(r map[string]any) { removeField(r, "business_id") },
			want: []string{"FORWARD Interaction.business_id"}, explain: "removed"},
		{name: "change type", current: in, change: func(r map[string]any) { field(r, "event_id")["type"] = "int" },
			want: []string{"FORWARD Interaction.event_id", "BACKWARD Interaction.event_id"}, explain: "changes from string (current) to int (new)"},
		{name: "add field without default", current: in, change: func(r map[string]any) {
			addField(r, `{"name":"channel","type":"string"}`)
		}, want: []string{"BACKWARD Interaction.channel"}, explain: "without a default"},
		{name: "add enum symbol", current: in, change: func(r map[string]any) {
			k := field(r, "kind")["type"].(map[string]any)
			k["symbols"] = append(k["symbols"].([]any), "REACTION")
		}, want: []string{"FORWARD Interaction.kind"}, explain: "gains a symbol"},
		{name: "several problems are all listed", current: in, change: func(r map[string]any) {
			removeField(r, "user_id")
			field(r, "occurred_at")["type"] = "string"
			addField(r, `{"name":"channel","type":"string"}`)
		}, want: []string{
			"FORWARD Interaction.user_id", "FORWARD Interaction.occurred_at",
			"BACKWARD Interaction.occurred_at", "BACKWARD Interaction.channel",
		}},
		{name: "renamed record", current: in, change: func(r map[string]any) { r["namespace"] = "other.v2" },
			want: []string{"FORWARD sponsor.v1.Interaction"}, explain: "full name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := Check(edit(t, tc.current, tc.change), tc.current)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, string(p.Direction)+" "+p.Path)
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("problems:\n got %q\nwant %q\n%v", got, tc.want, ps)
			}
			if tc.explain != "" && len(ps) > 0 && !strings.Contains(ps[0].Explain, tc.explain) {
				t.Errorf("explanation %q does not say %q", ps[0].Explain, tc.explain)
			}
		})
	}
}

func TestCheckBadSchema(t *testing.T) {
	if _, err := Check(`{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}`, schemas.InteractionSchema()); err == nil {
		t.Error("Check of an unparsable schema: no error")
	}
}

// TestCheckSharedTypes checks the fallback when a field uses a type another
// field defines (fields cannot be checked one by one): the whole schema's
// first problem is still reported.
func TestCheckSharedTypes(t *testing.T) {
	const cur = `{"type":"record","name":"R","fields":[
		{"name":"a","type":{"type":"record","name":"M","fields":[{"name":"x","type":"string"}]}},
		{"name":"b","type":"M"}]}`
	changed := strings.Replace(cur, `"name":"b","type":"M"`, `"name":"b","type":"int"`, 1)
	ps, err := Check(changed, cur)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Direction != Forward || ps[0].Path != "R.b" || ps[1].Direction != Backward || ps[1].Path != "R.b" {
		t.Errorf("problems %v, want FORWARD R.b and BACKWARD R.b", ps)
	}
}
