package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/topics"
)

// TestRedrive has the pipeline dead-letter bad records of three classes
// (misrouted keys and bytes that are not in the wire format on
// interactions, a campaign that expires before it is sent), fixes nothing,
// and redrives: the plan writes nothing; --reason misrouted sends exactly
// the misrouted records' bytes back to their partitions, once; a second
// run sends nothing; a redrive of everything then sends the other two
// classes and not the misrouted ones again. Finally the pipeline, started
// again, rejects the redriven records once more: they are dead letters again.
func TestRedrive(t *testing.T) {
	const prefix = "rd-"
	stack, conn := toolStack(t, prefix)
	names := topics.NewNames(prefix, "sponsor")
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rc, err := sr.NewClient(sr.URLs(stack.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := wire.New(ctx, rc, wire.Topics{Interactions: names.Interactions, Campaigns: names.Campaigns, Inbox: names.Inbox})
	if err != nil {
		t.Fatal(err)
	}

	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	interaction := func(user string) []byte {
		v, err := serde.AppendInteraction(nil, &schemas.Interaction{EventID: "ev-" + user, UserID: user, BusinessID: "b", Kind: schemas.UserMessage, OccurredAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var misrouted, notWire, recs []*kgo.Record
	for i := range 3 {
		r := &kgo.Record{Topic: names.Interactions, Key: fmt.Appendf(nil, "someone-%d", i), Value: interaction(fmt.Sprintf("user-%d", i))}
		misrouted = append(misrouted, r)
		recs = append(recs, r, &kgo.Record{Topic: names.Interactions, Key: fmt.Appendf(nil, "good-%d", i), Value: interaction(fmt.Sprintf("good-%d", i))})
	}
	for i := range 2 {
		r := &kgo.Record{Topic: names.Interactions, Key: fmt.Appendf(nil, "json-%d", i), Value: fmt.Appendf(nil, `{"user_id":"json-%d"}`, i)}
		notWire = append(notWire, r)
		recs = append(recs, r)
	}
	expired, err := serde.AppendCampaign(nil, &schemas.Campaign{CampaignID: "c-expired", BusinessID: "b", Action: schemas.Launch,
		SendAt: at, ExpiresAt: at.Add(-time.Hour), Message: schemas.Message{Text: "late"}})
	if err != nil {
		t.Fatal(err)
	}
	badCamp := &kgo.Record{Topic: names.Campaigns, Key: []byte("c-expired"), Value: expired}
	recs = append(recs, badCamp)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const deadLetters = 6

	stateDir := t.TempDir()
	stop := runPipeline(t, stack, prefix, stateDir)
	waitEnd(t, stack.Brokers, names.DeadLetter, deadLetters)
	stop()

	redriveCmd := func(args ...string) string {
		t.Helper()
		out, stderr, err := runCmd(t, cmdFunc("deadletter"), "", append(append([]string{"redrive"}, args...), conn...)...)
		if err != nil {
			t.Fatalf("deadletter redrive %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr)
		}
		t.Logf("deadletter redrive %v:\n%s%s", args, out, stderr)
		return out
	}
	inBefore := stableEnds(t, adm, names.Interactions)
	campBefore := stableEnds(t, adm, names.Campaigns)

	// The plan writes nothing.
	out := redriveCmd("--reason", "misrouted")
	for _, want := range []string{"rd-interactions", "misrouted-key", "Nothing was sent. Run again with --yes to send 3 dead letters back.", `key "someone-`} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if got := stableEnds(t, adm, names.Interactions); !maps2Equal(got, inBefore) {
		t.Errorf("the plan wrote to interactions: ends %v, before %v", got, inBefore)
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups() {
		if strings.Contains(g, "redrive") {
			t.Errorf("the plan created group %s", g)
		}
	}

	// A record the broker refuses for good (INVALID_RECORD on the first
	// produce to interactions): the redrive fails, and its transaction,
	// with the dead letters' offsets, is aborted: nothing sent, nothing
	// counted as sent (the next redrive still sends all three).
	fault := stack.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: names.Interactions, Err: kerr.InvalidRecord, Count: 1})
	_, stderr, err := runCmd(t, cmdFunc("deadletter"), "", append([]string{"redrive", "--reason", "misrouted", "--yes"}, conn...)...)
	fault.Remove()
	if err == nil || !strings.Contains(err.Error()+stderr, "INVALID_RECORD") {
		t.Fatalf("redrive with a refused record: err %v, stderr %s; want an INVALID_RECORD error", err, stderr)
	}
	if got := readCommittedFrom(t, stack.Brokers, names.Interactions, inBefore); len(got) != 0 {
		t.Fatalf("a redrive whose record was refused made %d records visible on interactions, want 0", len(got))
	}

	// --yes sends the misrouted records back, once, to their partitions.
	out = redriveCmd("--reason", "misrouted", "--yes")
	if !strings.Contains(out, "sent 3 misrouted-key dead letters back to rd-interactions") {
		t.Errorf("redrive --yes output:\n%s", out)
	}
	got := readCommittedFrom(t, stack.Brokers, names.Interactions, inBefore)
	assertSameRecords(t, "after redrive --reason misrouted", got, misrouted)

	// Again: nothing new.
	out = redriveCmd("--reason", "misrouted", "--yes")
	if !strings.Contains(out, "misrouted-key") || strings.Contains(out, "sent ") {
		t.Errorf("second redrive sent something or shows no plan:\n%s", out)
	}
	assertSameRecords(t, "after a second redrive", readCommittedFrom(t, stack.Brokers, names.Interactions, inBefore), misrouted)

	// Everything: the other two classes, not the misrouted ones again.
	out = redriveCmd("--yes")
	for _, want := range []string{"sent 2 not-wire-format dead letters back to rd-interactions", "sent 1 campaign-expires-before-send dead letter back to rd-campaigns", "sent 3 dead letters back"} {
		if !strings.Contains(out, want) {
			t.Errorf("redrive of everything lacks %q:\n%s", want, out)
		}
	}
	assertSameRecords(t, "after redrive of everything", readCommittedFrom(t, stack.Brokers, names.Interactions, inBefore), append(slices.Clone(misrouted), notWire...))
	assertSameRecords(t, "campaigns after redrive of everything", readCommittedFrom(t, stack.Brokers, names.Campaigns, campBefore), []*kgo.Record{badCamp})

	// Still broken: the pipeline rejects them again.
	stop = runPipeline(t, stack, prefix, stateDir)
	waitEnd(t, stack.Brokers, names.DeadLetter, 2*deadLetters)
	stop()
	out = redriveCmd()
	if !strings.Contains(out, "Run again with --yes to send 6 dead letters back.") {
		t.Errorf("plan after the records came back:\n%s", out)
	}
}

// runPipeline runs the pipeline on stack and returns a function that stops it.
func runPipeline(t *testing.T, stack *embedded.Stack, prefix, stateDir string) func() {
	t.Helper()
	r, err := pipeline.New(pipeline.Config{Brokers: stack.Brokers, Registry: stack.RegistryURL, TopicPrefix: prefix, StateDir: stateDir,
		Group: "sponsor", Partitions: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// stableEnds returns the last stable offsets of topic.
func stableEnds(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	l, err := adm.ListCommittedOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func maps2Equal(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitEnd waits until topic holds n records for read_committed readers.
func waitEnd(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := readCommittedFrom(t, brokers, topic, nil)
		switch {
		case len(recs) > n:
			t.Fatalf("%s holds %d records, want %d", topic, len(recs), n)
		case len(recs) == n:
			return
		case time.Now().After(deadline):
			t.Fatalf("%s holds %d records after 60s, want %d", topic, len(recs), n)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not an assertion
	}
}

// readCommittedFrom reads topic read_committed from the offsets from (nil:
// the start) to its last stable offsets of now.
func readCommittedFrom(t *testing.T, brokers []string, topic string, from map[int32]int64) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	rd := kafkaconn.Reader{Opts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Topics: map[string][]int32{topic: nil}, Starts: map[string]map[int32]int64{topic: from}}
	if err := rd.Read(ctx, func(r *kgo.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

// assertSameRecords checks that got holds each record of want once (key,
// value bytes and, if set, partition) and nothing else.
func assertSameRecords(t *testing.T, what string, got, want []*kgo.Record) {
	t.Helper()
	key := func(r *kgo.Record) string { return fmt.Sprintf("%q=%x", r.Key, r.Value) }
	count := map[string]int{}
	for _, r := range got {
		count[key(r)]++
	}
	for _, w := range want {
		if n := count[key(w)]; n != 1 {
			t.Errorf("%s: record with key %q is there %d times, want once", what, w.Key, n)
		}
		for _, r := range got {
			if key(r) == key(w) && r.Partition != w.Partition {
				t.Errorf("%s: record with key %q is on partition %d, it came from %d", what, w.Key, r.Partition, w.Partition)
			}
		}
		delete(count, key(w))
	}
	for k, n := range count {
		t.Errorf("%s: unexpected record %s (%d times)", what, k, n)
	}
}
