package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/jsonl"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// toolStack starts the embedded Kafka and registry with the topics of
// prefix and returns the connection flags for them.
func toolStack(t *testing.T, prefix string) (*embedded.Stack, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stack, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatalf("start embedded stack: %v", err)
	}
	t.Cleanup(func() { stack.Close() })
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cat := topics.Catalog{Names: topics.NewNames(prefix, "sponsor"), Partitions: 2, ReplicationFactor: -1}
	if _, err := cat.Ensure(ctx, kadm.NewClient(cl), true); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return stack, []string{"--brokers", strings.Join(stack.Brokers, ","), "--registry", stack.RegistryURL, "--topic-prefix", prefix}
}

// runCmd runs a command function in-process with stdin and returns its
// stdout, stderr and error.
func runCmd(t *testing.T, cmd func(context.Context, []string, stdio) error, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := cmd(ctx, args, stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return out.String(), errb.String(), err
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProduceThenTail runs `sponsor produce` on a file with bad lines (every
// problem reported as FILE:LINE: field X: reason, nothing written, as tail
// shows), then on good lines (with flags after the arguments and brokers
// from the environment), and wants `sponsor tail --values` to give back
// exactly the records written.
func TestProduceThenTail(t *testing.T) {
	stack, conn := toolStack(t, "p-")
	good := []string{
		`{"event_id":"e1","user_id":"u1","business_id":"b1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00Z"}`,
		`{"event_id":"e2","user_id":"u2","business_id":"b1","kind":"BOT_CTA_CLICK","occurred_at":1748779260000}`,
		`{"event_id":"e3","user_id":"u1","kind":"USER_ERASED","occurred_at":"2025-06-01T14:00:00+02:00"}`,
	}
	bad := writeFile(t, "bad.jsonl", strings.Join([]string{
		good[0],
		`{"event_id":"e2","user_id":"u2","business_id":"b1","kind":"CLICK","occurred_at":1748779260000}`,
		good[2],
		`{"event_id":"e4","user_id":"u4","business_id":"","kind":"BLOCK","occurred_at":"noon"}`,
	}, "\n"))
	_, stderr, err := runCmd(t, cmdFunc("produce"), "", append([]string{"interactions", bad}, conn...)...)
	if err == nil || !strings.Contains(err.Error(), "nothing written") {
		t.Errorf("produce of a file with bad lines: error %v, want ... nothing written", err)
	}
	wantErr := bad + `:2: field kind: unknown symbol "CLICK", want one of USER_MESSAGE, BOT_STARTED, BOT_CTA_CLICK, BUSINESS_MESSAGE, BLOCK, UNBLOCK, SPONSORED_OPT_OUT, SPONSORED_OPT_IN, USER_ERASED
` + bad + `:4: field business_id: empty (the pipeline rejects the record)
` + bad + `:4: field occurred_at: want an RFC 3339 time (2025-06-01T12:00:00Z) or epoch milliseconds, got "noon"
`
	if stderr != wantErr {
		t.Errorf("produce stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
	out, _, err := runCmd(t, cmdFunc("tail"), "", append([]string{"interactions"}, conn...)...)
	if err != nil || out != "" {
		t.Errorf("tail after a refused produce: %q, %v; want nothing", out, err)
	}

	// Good lines from stdin; flags after the positional argument; brokers
	// from the environment.
	t.Setenv("SPONSOR_BROKERS", strings.Join(stack.Brokers, ","))
	out, stderr, err = runCmd(t, cmdFunc("produce"), strings.Join(good, "\n")+"\n", "interactions", "-", "--registry", stack.RegistryURL, "--topic-prefix", "p-")
	if err != nil || out != "wrote 3 records to p-interactions in one transaction\n" {
		t.Fatalf("produce of good lines: %q, %q, %v", out, stderr, err)
	}
	out, _, err = runCmd(t, cmdFunc("tail"), "", append([]string{"interactions", "--values"}, conn...)...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := jsonl.ReadInteractions(strings.NewReader(out), "tail")
	if err != nil {
		t.Fatalf("tail --values output %q: %v", out, err)
	}
	want, _ := jsonl.ReadInteractions(strings.NewReader(strings.Join(good, "\n")), "good")
	byID := map[string]schemas.Interaction{}
	for _, in := range got {
		byID[in.EventID] = in
	}
	if len(got) != len(want) {
		t.Errorf("tail shows %d interactions, want %d", len(got), len(want))
	}
	for _, w := range want {
		if !reflect.DeepEqual(byID[w.EventID], w) {
			t.Errorf("tail shows %+v, want %+v", byID[w.EventID], w)
		}
	}

	// Full lines: keys are the users.
	out, _, err = runCmd(t, cmdFunc("tail"), "", append([]string{"interactions", "-n", "1"}, conn...)...)
	var rec struct {
		Topic string
		Key   string
		Value json.RawMessage
	}
	if err != nil || json.Unmarshal([]byte(out), &rec) != nil || rec.Topic != "p-interactions" || !strings.Contains(string(rec.Value), `"user_id":"`+rec.Key+`"`) {
		t.Errorf("tail -n 1: %q, %v; want one record keyed by its user", out, err)
	}
}

// TestProduceCampaignsAndErrors checks campaigns and the usage errors.
func TestProduceCampaignsAndErrors(t *testing.T) {
	_, conn := toolStack(t, "")
	line := `{"campaign_id":"c1","business_id":"b1","action":"LAUNCH","send_at":"2025-06-01T12:00:00Z","expires_at":"2025-06-02T12:00:00Z","audience":[{"kind":"BOT_STARTED","within_days":30}],"message":{"text":"hi","cta_url":"https://x"}}`
	out, stderr, err := runCmd(t, cmdFunc("produce"), line+"\n", append([]string{"campaigns"}, conn...)...)
	if err != nil || out != "wrote 1 record to campaigns in one transaction\n" {
		t.Fatalf("produce campaigns: %q, %q, %v", out, stderr, err)
	}
	out, _, err = runCmd(t, cmdFunc("tail"), "", append([]string{"campaigns", "--values"}, conn...)...)
	c, _ := jsonl.UnmarshalCampaign([]byte(line))
	want, _ := jsonl.MarshalCampaign(&c)
	if err != nil || out != string(want)+"\n" {
		t.Errorf("tail campaigns --values = %q, %v; want %s", out, err, want)
	}
	// A CANCEL as the README writes it: the campaign and its business.
	cancel := `{"campaign_id":"c1","business_id":"b1","action":"CANCEL"}`
	if out, stderr, err := runCmd(t, cmdFunc("produce"), cancel+"\n", append([]string{"campaigns"}, conn...)...); err != nil || out != "wrote 1 record to campaigns in one transaction\n" {
		t.Errorf("produce a CANCEL with only campaign_id and business_id: %q, %q, %v", out, stderr, err)
	}
	for _, args := range [][]string{{"inbox"}, {}, {"interactions", "a", "b"}} {
		if _, _, err := runCmd(t, cmdFunc("produce"), "", append(args, conn...)...); err == nil {
			t.Errorf("produce %v: no error", args)
		}
	}
	if _, _, err := runCmd(t, cmdFunc("tail"), "", append([]string{"outbox"}, conn...)...); err == nil || !strings.Contains(err.Error(), `unknown topic "outbox"`) {
		t.Errorf("tail outbox: %v, want unknown topic", err)
	}
	if _, _, err := runCmd(t, cmdFunc("tail"), "", append([]string{"inbox", "--from", "yesterday"}, conn...)...); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Errorf("tail --from yesterday: %v, want a --from error", err)
	}
}

// TestGenCommand runs `sponsor gen --count N` and checks that N
// interactions are in the topic.
func TestGenCommand(t *testing.T) {
	stack, conn := toolStack(t, "")
	out, stderr, err := runCmd(t, cmdFunc("gen"), "", append([]string{"--count", "700", "--users", "40", "--businesses", "4", "--campaign-every", "0"}, conn...)...)
	if err != nil || !strings.HasPrefix(out, "wrote 700 interactions to interactions and 0 campaigns") {
		t.Fatalf("gen: %q, %v (stderr %s)", out, err, stderr)
	}
	if !strings.Contains(stderr, "gen done") || !strings.Contains(stderr, "interactions=700") {
		t.Errorf("gen progress on a non-terminal: %q, want log lines ending with gen done", stderr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "interactions")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if n != 700 {
		t.Errorf("interactions holds %d records after gen --count 700", n)
	}
	if _, _, err := runCmd(t, cmdFunc("gen"), "", conn...); err == nil {
		t.Error("gen without --count or --rate: no error")
	}
}

// TestSchemasCheck runs `sponsor schemas check` on compatible and
// incompatible versions, against the embedded schema and the registry.
func TestSchemasCheck(t *testing.T) {
	stack, _ := toolStack(t, "")
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.New(context.Background(), rc, wire.Topics{Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox"}); err != nil {
		t.Fatal(err)
	}
	cur := schemas.InteractionSchema()
	lastField := `{"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "Event time, milliseconds since the Unix epoch (UTC)."}`
	if !strings.Contains(cur, lastField) {
		t.Fatalf("interaction.avsc changed: update the test's anchor %s", lastField)
	}
	addOptional := writeFile(t, "v2.avsc", strings.Replace(cur, lastField, lastField+`,
    {"name": "channel", "type": ["null", "string"], "default": null}`, 1))
	addRequired := writeFile(t, "v3.avsc", strings.Replace(cur, lastField, lastField+`,
    {"name": "channel", "type": "string"}`, 1))
	dropBusiness := writeFile(t, "v4.avsc", strings.Replace(cur, `{"name": "business_id", "type": "string", "doc": "The business; empty for USER_ERASED."},`, "", 1))
	if addRequired == "" || dropBusiness == "" {
		t.Fatal("bad test schema")
	}
	campaignTyped := writeFile(t, "c.avsc", strings.Replace(schemas.CampaignSchema(), `{"name": "text", "type": "string"`, `{"name": "text", "type": "int"`, 1))

	for _, tc := range []struct {
		args []string
		ok   bool
		want []string // lines the output must contain
	}{
		{[]string{"check", addOptional}, true, []string{addOptional + " vs the pipeline's interactions schema: compatible (FORWARD and BACKWARD)"}},
		{[]string{"check", addOptional, "--registry", stack.RegistryURL}, true, []string{"vs registry subject interactions-value version 1 (id 1): compatible"}},
		{[]string{"check", addRequired, "--against", "interactions"}, false, []string{"NOT compatible", "BACKWARD Interaction.channel: field channel is added without a default"}},
		{[]string{"check", dropBusiness}, false, []string{"FORWARD Interaction.business_id: field business_id is removed"}},
		{[]string{"check", campaignTyped, "--registry", stack.RegistryURL}, false, []string{
			"FORWARD Campaign.message.text: message.text changes from string (current) to int (new)",
			"vs registry subject campaigns-value version 1 (id 2): NOT compatible",
		}},
	} {
		out, stderr, err := runCmd(t, cmdFunc("schemas"), "", tc.args...)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, errIncompatible) {
			t.Errorf("schemas %v: error %v (stderr %s), want compatible %v", tc.args, err, stderr, tc.ok)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("schemas %v output:\n%s\nwant a line with %q", tc.args, out, w)
			}
		}
	}
	if _, _, err := runCmd(t, cmdFunc("schemas"), "", "check", writeFile(t, "x.avsc", `{"type":"record","name":"Other","fields":[]}`)); err == nil || !strings.Contains(err.Error(), "--against") {
		t.Errorf("schemas check of another record: %v, want a request for --against", err)
	}
	// A file that is no Avro schema says so, and where.
	for text, want := range map[string]string{
		"garbage\n": "not a valid Avro schema: not JSON at line 1, column 1",
		"{\"type\": \"record\",\n \"name\": \"Interaction\",\n \"fields\": [}":          "not a valid Avro schema: not JSON at line 3, column 13",
		`{"type":"record","name":"Interaction","fields":[{"name":"a","type":"strin"}]}`: `not a valid Avro schema: unknown type "strin"`,
		`{"type":"enum","name":"Interaction","symbols":["A"]}`:                          "the schema's top level is enum, not a record",
	} {
		file := writeFile(t, "bad.avsc", text)
		if _, _, err := runCmd(t, cmdFunc("schemas"), "", "check", file, "--against", "interactions"); err == nil || err.Error() != file+": "+want && !strings.HasPrefix(err.Error(), file+": "+want) {
			t.Errorf("schemas check of %q: %v, want %q", text, err, file+": "+want)
		}
	}
}
