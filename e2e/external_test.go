package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// TestExternalClients checks the inbox with clients nobody here wrote, after
// a small scenario has run through the pipeline (and the inbox matched the
// oracle with our own read_committed reader):
//
//   - kcat (Debian's package, librdkafka) with isolation.level=read_committed
//     must read exactly the committed inbox records: the same count and the
//     same keys as our reader. Read with read_uncommitted it must see more:
//     the test writes an aborted transaction of decoy records into the inbox
//     (valid inbox values, keys "aborted-..."), so the run always has aborted
//     records, and read_committed is shown to hide them.
//   - Confluent's Python client (confluent-kafka's Consumer with
//     read_committed, and its schema_registry AvroDeserializer against the
//     registry) must decode every inbox record, and the decoded records must
//     be exactly the oracle's deliveries (e2e/external/decode_inbox.py).
//
// Each part skips, saying why, when its tool is missing: kcat on the PATH;
// a python with confluent_kafka, given by SPONSOR_PYTHON (a virtualenv with
// e2e/external/requirements.txt) or else python3 if it can import it.
func TestExternalClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the pipeline and outside clients")
	}
	kcat, kcatErr := exec.LookPath("kcat")
	python, pyWhy := externalPython(t)
	if kcatErr != nil && python == "" {
		t.Skipf("no outside client available: kcat not on PATH (apt-get install -y kcat); %s", pyWhy)
	}

	sc := newScenario(scenarioConfig{Seed: 11, Users: 150, Businesses: 10, Interactions: 1500, Campaigns: 10})
	want, _ := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	if len(want) == 0 {
		t.Fatal("scenario has no deliveries: nothing to check")
	}
	c := newCluster(t, "external", 3)
	c.produceScenario(t, sc)
	h := startRunner(t, c, t.TempDir(), nil)
	c.waitSettled(t, campaignIDs(sc.Campaigns), 90*time.Second, h.alive)
	rep := c.checkInbox(t, sc, want)
	pipelineAborts := h.r.Stats().Aborts.Load()
	h.stop(t)
	if !rep.ok() {
		t.FailNow()
	}
	decoys := c.abortedInboxRecords(t, 7)
	committed := c.readAll(t, c.names.Inbox)
	var goKeys []string
	for _, r := range committed {
		goKeys = append(goKeys, string(r.Key))
	}
	slices.Sort(goKeys)
	t.Logf("inbox: %d committed records (our read_committed reader), %d expected deliveries; the pipeline's transactions aborted: %d; decoy records in an aborted transaction: %d",
		len(committed), len(want), pipelineAborts, len(decoys))
	brokers := strings.Join(c.brokers, ",")

	t.Run("kcat", func(t *testing.T) {
		if kcatErr != nil {
			t.Skipf("kcat not on PATH (Debian: apt-get install -y kcat): %v", kcatErr)
		}
		rc := runKcat(t, kcat, brokers, c.names.Inbox, "read_committed")
		ru := runKcat(t, kcat, brokers, c.names.Inbox, "read_uncommitted")
		t.Logf("kcat: read_committed %d records, read_uncommitted %d (our reader: %d committed; decoys aborted: %d)", len(rc), len(ru), len(committed), len(decoys))
		if len(rc) != len(committed) {
			t.Errorf("kcat read_committed counts %d inbox records, our read_committed reader %d", len(rc), len(committed))
		}
		if !slices.Equal(rc, goKeys) {
			t.Errorf("kcat read_committed keys differ from our reader's: only kcat %v; only ours %v", firstFew(minus(rc, goKeys)), firstFew(minus(goKeys, rc)))
		}
		if len(ru) < len(rc)+len(decoys) {
			t.Errorf("kcat read_uncommitted counts %d records, want at least %d (committed %d + aborted decoys %d)", len(ru), len(rc)+len(decoys), len(rc), len(decoys))
		}
		if m := minus(decoys, ru); len(m) > 0 {
			t.Errorf("kcat read_uncommitted does not show the aborted decoys %v: the negative control proves nothing", m)
		}
		if m := intersect(rc, decoys); len(m) > 0 {
			t.Errorf("kcat read_committed shows records of the aborted transaction: %v", m)
		}
	})

	t.Run("confluent-kafka-python", func(t *testing.T) {
		if python == "" {
			t.Skip(pyWhy)
		}
		script, err := filepath.Abs(filepath.Join("external", "decode_inbox.py"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, python, script, "--brokers", brokers, "--registry", c.registry,
			"--topic", c.names.Inbox, "--group", c.prefix+fmt.Sprintf("decode-inbox-%d", time.Now().UnixNano()), "--timeout", "90")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\nstderr:\n%s", python, script, err, stderr.String())
		}
		t.Logf("decode_inbox.py took %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
		var got []externalRecord
		lines := bufio.NewScanner(&stdout)
		lines.Buffer(nil, 1<<20)
		for lines.Scan() {
			var r externalRecord
			if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
				t.Fatalf("decode_inbox.py printed %q: %v", lines.Text(), err)
			}
			got = append(got, r)
		}
		if err := lines.Err(); err != nil {
			t.Fatal(err)
		}
		erep := compareExternal(got, committed, want, sc.Campaigns)
		t.Logf("confluent-kafka (AvroDeserializer): %s", erep)
		if !erep.ok() {
			t.Errorf("inbox decoded by confluent-kafka is not the oracle's: %s", erep)
		}
	})
}

// externalPython returns the python to run decode_inbox.py with, or "" and
// why not. SPONSOR_PYTHON, when set, must work (CI sets it on purpose);
// otherwise python3 is used if it can import confluent_kafka.
func externalPython(t *testing.T) (string, string) {
	t.Helper()
	check := func(py string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "-c",
			"import confluent_kafka, fastavro; from confluent_kafka.schema_registry.avro import AvroDeserializer; print(confluent_kafka.version()[0], confluent_kafka.libversion()[0], fastavro.__version__)").CombinedOutput()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return fmt.Errorf("%v: %s", err, lines[len(lines)-1]) // the exception, not the traceback
		}
		t.Logf("python %s: confluent-kafka, librdkafka, fastavro: %s", py, bytes.TrimSpace(out))
		return nil
	}
	const how = "python3 -m venv DIR && DIR/bin/pip install -r e2e/external/requirements.txt; SPONSOR_PYTHON=DIR/bin/python"
	if py := os.Getenv("SPONSOR_PYTHON"); py != "" {
		if err := check(py); err != nil {
			t.Fatalf("SPONSOR_PYTHON=%s cannot import confluent_kafka's Avro deserializer (%s): %v", py, how, err)
		}
		return py, ""
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return "", "SPONSOR_PYTHON is not set and there is no python3 (" + how + ")"
	}
	if err := check(py); err != nil {
		return "", fmt.Sprintf("SPONSOR_PYTHON is not set and python3 cannot import confluent_kafka (%s): %v", how, err)
	}
	return py, ""
}

// runKcat reads topic from the start to its end with kcat at the given
// isolation level and returns the keys, sorted, one per record.
func runKcat(t *testing.T, kcat, brokers, topic, isolation string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=" + isolation, "-f", `%k\n`}
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("kcat %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	keys := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if stdout.Len() == 0 {
		keys = nil
	}
	slices.Sort(keys)
	return keys
}

// abortedInboxRecords writes n decoy inbox records (valid values, keys
// "aborted-NNN") in one transaction and aborts it: a read_committed reader
// must never see them, a read_uncommitted one does. It returns their keys.
func (c *cluster) abortedInboxRecords(t *testing.T, n int) []string {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic(c.names.Inbox),
		kgo.TransactionalID(fmt.Sprintf("%sexternal-decoys-%d", c.prefix, time.Now().UnixNano())))
	if err != nil {
		t.Fatalf("transactional client: %v", err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	var keys []string
	for i := range n {
		user := fmt.Sprintf("aborted-%03d", i)
		m := schemas.InboxMessage{DeliveryID: policy.DeliveryID("aborted-campaign", user), UserID: user, BusinessID: "aborted-business",
			CampaignID: "aborted-campaign", SentAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Message: schemas.Message{Text: "never delivered"}}
		v, err := c.serde.AppendInbox(nil, &m)
		if err != nil {
			t.Fatalf("encode decoy: %v", err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(user), Value: v}).FirstErr(); err != nil {
			t.Fatalf("produce decoy: %v", err)
		}
		keys = append(keys, user)
	}
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort transaction: %v", err)
	}
	slices.Sort(keys)
	return keys
}

// externalRecord is one line of decode_inbox.py.
type externalRecord struct {
	Partition  int32   `json:"partition"`
	Offset     int64   `json:"offset"`
	Key        *string `json:"key"`
	DeliveryID string  `json:"delivery_id"`
	UserID     string  `json:"user_id"`
	BusinessID string  `json:"business_id"`
	CampaignID string  `json:"campaign_id"`
	SentAt     int64   `json:"sent_at"` // epoch millis
	Text       string  `json:"text"`
	CTALabel   *string `json:"cta_label"`
	CTAURL     *string `json:"cta_url"`
}

// compareExternal checks the records decoded by the outside client against
// the oracle's deliveries field by field, and against the records our own
// read_committed reader got (the same partitions and offsets).
func compareExternal(got []externalRecord, committed []*kgo.Record, want map[pairKey]delivery, camps []schemas.Campaign) inboxReport {
	msgs := map[string]schemas.Message{}
	for _, c := range firingCampaigns(camps) {
		msgs[c.CampaignID] = c.Message
	}
	type at struct {
		p int32
		o int64
	}
	ours := map[at]bool{}
	for _, r := range committed {
		ours[at{r.Partition, r.Offset}] = true
	}
	rep := inboxReport{Records: len(got), Expected: len(want)}
	seen := map[pairKey]int{}
	theirs := map[at]bool{}
	for _, r := range got {
		where := fmt.Sprintf("inbox %d@%d", r.Partition, r.Offset)
		theirs[at{r.Partition, r.Offset}] = true
		if !ours[at{r.Partition, r.Offset}] {
			rep.Wrong = append(rep.Wrong, where+": not a record our read_committed reader got")
		}
		k := pairKey{r.CampaignID, r.UserID}
		seen[k]++
		if seen[k] == 2 {
			rep.Duplicates = append(rep.Duplicates, fmt.Sprintf("%s: %s->%s again", where, r.CampaignID, r.UserID))
		}
		if r.Key == nil || *r.Key != r.UserID {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: key %v, want the user_id %q", where, r.Key, r.UserID))
		}
		if id := policy.DeliveryID(r.CampaignID, r.UserID); r.DeliveryID != id {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: delivery id %q, want %q", where, r.DeliveryID, id))
		}
		d, ok := want[k]
		if !ok {
			if seen[k] == 1 {
				rep.Extra = append(rep.Extra, fmt.Sprintf("%s: %s->%s", where, r.CampaignID, r.UserID))
			}
			continue
		}
		if r.SentAt != d.SentAt.UnixMilli() {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v sent_at %d, want %d", where, k, r.SentAt, d.SentAt.UnixMilli()))
		}
		if r.BusinessID != d.Business {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v business %q, want %q", where, k, r.BusinessID, d.Business))
		}
		if wm := msgs[r.CampaignID]; !sameMessage(wm, schemas.Message{Text: r.Text, CTALabel: r.CTALabel, CTAURL: r.CTAURL}) {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("%s: %v message %q/%v/%v, want %+v", where, k, r.Text, r.CTALabel, r.CTAURL, wm))
		}
	}
	for a := range ours {
		if !theirs[a] {
			rep.Wrong = append(rep.Wrong, fmt.Sprintf("inbox %d@%d: our reader got it, the outside client did not", a.p, a.o))
		}
	}
	rep.Deliveries = len(seen)
	for k, d := range want {
		if seen[k] == 0 {
			rep.Missing = append(rep.Missing, d.String())
		}
	}
	slices.Sort(rep.Missing)
	slices.Sort(rep.Wrong)
	return rep
}

// minus returns the elements of a (sorted) not in b, as multisets.
func minus(a, b []string) []string {
	count := map[string]int{}
	for _, x := range b {
		count[x]++
	}
	var out []string
	for _, x := range a {
		if count[x] > 0 {
			count[x]--
			continue
		}
		out = append(out, x)
	}
	return out
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

// TestCompareExternalCatches is the checker's negative control: records that
// are duplicated, extra, missing, misdecoded or not the ones our reader got
// must each be reported.
func TestCompareExternalCatches(t *testing.T) {
	send := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	camp := schemas.Campaign{CampaignID: "c1", BusinessID: "b", Action: schemas.Launch, SendAt: send, ExpiresAt: send.Add(time.Hour), Message: schemas.Message{Text: "hi"}}
	want := map[pairKey]delivery{}
	var committed []*kgo.Record
	rec := func(u string, off int64) externalRecord {
		k := u
		return externalRecord{Partition: 0, Offset: off, Key: &k, DeliveryID: policy.DeliveryID("c1", u), UserID: u, BusinessID: "b", CampaignID: "c1", SentAt: send.UnixMilli(), Text: "hi"}
	}
	var good []externalRecord
	for i, u := range []string{"u1", "u2", "u3"} {
		want[pairKey{"c1", u}] = delivery{Campaign: "c1", User: u, Business: "b", SentAt: send}
		committed = append(committed, &kgo.Record{Partition: 0, Offset: int64(i), Key: []byte(u)})
		good = append(good, rec(u, int64(i)))
	}
	if rep := compareExternal(good, committed, want, []schemas.Campaign{camp}); !rep.ok() {
		t.Fatalf("good records reported: %s", rep)
	}
	for _, tc := range []struct {
		name string
		mod  func([]externalRecord) []externalRecord
		bad  func(inboxReport) int
	}{
		{"duplicate", func(rs []externalRecord) []externalRecord { return append(rs, rs[0]) }, func(r inboxReport) int { return len(r.Duplicates) }},
		{"missing", func(rs []externalRecord) []externalRecord { return rs[1:] }, func(r inboxReport) int { return len(r.Missing) }},
		{"extra", func(rs []externalRecord) []externalRecord { x := rec("u9", 3); return append(rs, x) }, func(r inboxReport) int { return len(r.Extra) }},
		{"sent_at", func(rs []externalRecord) []externalRecord { rs[0].SentAt++; return rs }, func(r inboxReport) int { return len(r.Wrong) }},
		{"text", func(rs []externalRecord) []externalRecord { rs[1].Text = "ho"; return rs }, func(r inboxReport) int { return len(r.Wrong) }},
		{"key", func(rs []externalRecord) []externalRecord { rs[2].Key = nil; return rs }, func(r inboxReport) int { return len(r.Wrong) }},
		{"delivery id", func(rs []externalRecord) []externalRecord { rs[0].DeliveryID = "x"; return rs }, func(r inboxReport) int { return len(r.Wrong) }},
	} {
		rs := tc.mod(slices.Clone(good))
		if rep := compareExternal(rs, committed, want, []schemas.Campaign{camp}); rep.ok() || tc.bad(rep) == 0 {
			t.Errorf("%s: not reported: %s", tc.name, rep)
		}
	}
}
