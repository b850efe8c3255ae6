package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/deploy/embedded"
	"github.com/sponsored/sponsor/kafkaconn"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
	"github.com/sponsored/sponsor/state"
	"github.com/sponsored/sponsor/topics"
)

// cluster is an embedded Kafka and registry with the pipeline's topics, and
// the clients a test uses to feed and read them.
type cluster struct {
	stack    *embedded.Stack // nil on a real Kafka
	brokers  []string
	registry string
	prefix   string // topic prefix, empty on the embedded stack
	names    topics.Names
	group    string
	parts    int32
	cl       *kgo.Client // producer: default partitioner, as platform teams use
	adm      *kadm.Client
	serde    *wire.Serde
}

func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newCluster starts an embedded stack (or, when KAFKA_BROKERS is set, uses
// that real Kafka with an in-process registry and topic names unique to
// this run) and creates the topics of group, with
// parts partitions.
func newCluster(t testing.TB, group string, parts int32) *cluster {
	t.Helper()
	ctx := testContext(t, time.Minute)
	c := &cluster{group: group, parts: parts}
	if brokers := os.Getenv("KAFKA_BROKERS"); brokers != "" {
		reg := srfake.New()
		t.Cleanup(reg.Close)
		c.brokers, c.registry = strings.Split(brokers, ","), reg.URL()
		// A real broker keeps its topics and groups across runs.
		c.prefix = fmt.Sprintf("e2e-%d-", time.Now().UnixNano())
		c.group = c.prefix + group
		t.Logf("real Kafka at %s, topics prefixed %q", brokers, c.prefix)
	} else {
		var stack *embedded.Stack
		var err error
		// The broker's goroutines carry bench=broker in CPU profiles.
		pprof.Do(context.Background(), pprof.Labels("bench", "broker"), func(context.Context) {
			stack, err = embedded.Start(embedded.Options{})
		})
		if err != nil {
			t.Fatalf("start embedded stack: %v", err)
		}
		t.Cleanup(func() { stack.Close() })
		c.stack, c.brokers, c.registry = stack, stack.Brokers, stack.RegistryURL
	}
	c.connect(t, ctx)
	t.Cleanup(c.cl.Close)
	return c
}

// connect names the cluster's topics from its prefix and group, opens its
// client, admin and serde, and creates its topics with c.parts partitions.
// The caller closes c.cl.
func (c *cluster) connect(tb testing.TB, ctx context.Context) {
	tb.Helper()
	c.names = topics.NewNames(c.prefix, c.group)
	var err error
	c.cl, err = kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		tb.Fatalf("kafka client: %v", err)
	}
	c.adm = kadm.NewClient(c.cl)
	cat := topics.Catalog{Names: c.names, Partitions: c.parts, ReplicationFactor: -1}
	if n, err := cat.Ensure(ctx, c.adm, true); err != nil || n != c.parts {
		tb.Fatalf("create topics: got %d partitions, err %v; want %d, nil", n, err, c.parts)
	}
	rc, err := sr.NewClient(sr.URLs(c.registry))
	if err != nil {
		tb.Fatalf("registry client: %v", err)
	}
	c.serde, err = wire.New(ctx, rc, wire.Topics{Interactions: c.names.Interactions, Campaigns: c.names.Campaigns, Inbox: c.names.Inbox, Decisions: c.names.Decisions})
	if err != nil {
		tb.Fatalf("serde: %v", err)
	}
}

// produce writes recs synchronously, in order, and returns them with their
// partitions and offsets.
func (c *cluster) produce(t testing.TB, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	ctx := testContext(t, 10*time.Minute)
	for i := 0; i < len(recs); i += 2000 {
		if err := c.cl.ProduceSync(ctx, recs[i:min(i+2000, len(recs))]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	return recs
}

func (c *cluster) campaignRecord(t testing.TB, camp *schemas.Campaign) *kgo.Record {
	t.Helper()
	v, err := c.serde.AppendCampaign(nil, camp)
	if err != nil {
		t.Fatalf("encode campaign %s: %v", camp.CampaignID, err)
	}
	return &kgo.Record{Topic: c.names.Campaigns, Key: []byte(camp.CampaignID), Value: v}
}

func (c *cluster) interactionRecord(t testing.TB, in *schemas.Interaction) *kgo.Record {
	t.Helper()
	v, err := c.serde.AppendInteraction(nil, in)
	if err != nil {
		t.Fatalf("encode interaction %s: %v", in.EventID, err)
	}
	return &kgo.Record{Topic: c.names.Interactions, Key: []byte(in.UserID), Value: v}
}

// produceScenario publishes the campaigns, then the interactions.
func (c *cluster) produceScenario(t testing.TB, sc scenario) {
	t.Helper()
	var recs []*kgo.Record
	for i := range sc.Campaigns {
		recs = append(recs, c.campaignRecord(t, &sc.Campaigns[i]))
	}
	c.produce(t, recs...)
	recs = recs[:0]
	for i := range sc.Interactions {
		recs = append(recs, c.interactionRecord(t, &sc.Interactions[i]))
	}
	c.produce(t, recs...)
}

// offsets returns the end offsets of topic: the high watermarks, or with
// stable, the last stable offsets (what read_committed can read). It
// retries while the client's metadata does not know the topic yet.
func (c *cluster) offsets(t testing.TB, topic string, stable bool) map[int32]int64 {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	list := c.adm.ListEndOffsets
	if stable {
		list = c.adm.ListCommittedOffsets
	}
	for {
		lo, err := list(ctx, topic)
		out := map[int32]int64{}
		lo.Each(func(o kadm.ListedOffset) {
			if o.Err != nil && err == nil {
				err = fmt.Errorf("partition %d: %w", o.Partition, o.Err)
			}
			out[o.Partition] = o.Offset
		})
		if err == nil && len(out) > 0 {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("list offsets of %s: %v", topic, err)
		case <-time.After(50 * time.Millisecond): // a retry interval, not an assertion
		}
	}
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// readAll reads topic with read_committed from the start up to its last
// stable offsets of now, and returns its records (no control records).
func (c *cluster) readAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ends := c.offsets(t, topic, true)
	ctx := testContext(t, time.Minute)
	var out []*kgo.Record
	rd := kafkaconn.Reader{Opts: []kgo.Opt{kgo.SeedBrokers(c.brokers...)}, Topics: map[string][]int32{topic: nil}, Ends: map[string]map[int32]int64{topic: ends}}
	if err := rd.Read(ctx, func(r *kgo.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("read %s to the stable ends %v: %v", topic, ends, err)
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out
}

// Changelog key layout (state package): 'g'+campaign id for a campaign's
// progress, 'm'+"task" for the task's metadata.
const (
	changelogCampaignKind = 'g'
	changelogMetaKey      = "mtask"
)

// settledState is what the changelog says about each task.
type settledState struct {
	meta  map[int32]policy.Meta
	camps map[int32]map[string]*policy.Status // nil pointer: deleted (forgotten when done)
}

// waitSettled waits, reading the changelog with read_committed, until every
// task has processed its whole interactions partition and every campaign
// in ids is done in every task (fired, cancelled or expired; forgotten
// counts as done, since only done campaigns are forgotten). The inbox
// records are committed in the same transactions, so they are all readable
// then.
func (c *cluster) waitSettled(t testing.TB, ids []string, timeout time.Duration, alive func() error) settledState {
	t.Helper()
	ends := c.offsets(t, c.names.Interactions, false)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...),
		kgo.ConsumeTopics(c.names.Changelog), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatalf("changelog consumer: %v", err)
	}
	defer cl.Close()
	st := settledState{meta: map[int32]policy.Meta{}, camps: map[int32]map[string]*policy.Status{}}
	deadline := time.Now().Add(timeout)
	missing := func() []string {
		var why []string
		for p := range c.parts {
			m, ok := st.meta[p]
			if !ok && ends[p] > 0 {
				why = append(why, fmt.Sprintf("p%d: no metadata yet", p))
				continue
			}
			if m.Input < ends[p] {
				why = append(why, fmt.Sprintf("p%d: input offset %d, want %d", p, m.Input, ends[p]))
			}
			for _, id := range ids {
				s, seen := st.camps[p][id]
				switch {
				case !seen && doneByFrontier(m, id):
					// A campaign with nothing to do across transactions
					// writes no record: the frontier, or the stream time
					// past its send time, says it is done.
				case !seen:
					why = append(why, fmt.Sprintf("p%d: campaign %s not seen", p, id))
				case s != nil && !s.Done():
					why = append(why, fmt.Sprintf("p%d: campaign %s %s", p, id, *s))
				}
			}
		}
		return why
	}
	for {
		why := missing()
		if len(why) == 0 {
			return st
		}
		if time.Now().After(deadline) {
			if len(why) > 10 {
				why = append(why[:10], fmt.Sprintf("... and %d more", len(why)-10))
			}
			t.Fatalf("pipeline did not settle within %s: %s", timeout, strings.Join(why, "; "))
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("pipeline stopped before settling: %v (waiting for: %s)", err, why[0])
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			p := r.Partition
			switch {
			case string(r.Key) == changelogMetaKey && r.Value != nil:
				m, err := state.DecodeMeta(r.Value)
				if err != nil {
					t.Fatalf("changelog %d@%d: decode meta: %v", p, r.Offset, err)
				}
				st.meta[p] = m
			case len(r.Key) > 0 && r.Key[0] == changelogCampaignKind:
				if st.camps[p] == nil {
					st.camps[p] = map[string]*policy.Status{}
				}
				id := string(r.Key[1:])
				if r.Value == nil {
					st.camps[p][id] = nil
					return
				}
				pr, err := state.DecodeProgress(r.Value)
				if err != nil {
					t.Fatalf("changelog %d@%d: decode campaign %s: %v", p, r.Offset, id, err)
				}
				st.camps[p][id] = &pr.Status
			}
		})
	}
}

// campaignKeys holds the firing-order key of every campaign id that
// campaignIDs was given a LAUNCH of, for doneByFrontier.
var campaignKeys sync.Map // id -> policy.Key

// doneByFrontier reports whether a task's metadata m says campaign id, of
// which it has no record, is done: its key is at or below the frontier, or
// the stream time has passed its send time (a cancelled or expired one).
func doneByFrontier(m policy.Meta, id string) bool {
	v, ok := campaignKeys.Load(id)
	if !ok {
		return false
	}
	k := v.(policy.Key)
	return k.Compare(m.Frontier) <= 0 || m.Time > k.SendAt
}

// campaignIDs returns the ids a task keeps a record of: every id with a
// valid LAUNCH or a CANCEL.
func campaignIDs(recs []schemas.Campaign) []string {
	var ids []string
	for _, c := range recs {
		if c.Action == schemas.Launch && c.ExpiresAt.Before(c.SendAt) {
			continue
		}
		if c.Action == schemas.Launch {
			campaignKeys.LoadOrStore(c.CampaignID, policy.Key{SendAt: c.SendAt.UnixMilli(), ID: c.CampaignID})
		}
		if !slices.Contains(ids, c.CampaignID) {
			ids = append(ids, c.CampaignID)
		}
	}
	return ids
}

// fileLogger returns a logger writing to a file in the test's temp folder,
// and prints the file's tail if the test fails.
func fileLogger(t testing.TB, name string) (*slog.Logger, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			dumpTail(t, path, 40)
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), path
}

func dumpTail(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), path, bytes.Join(lines, []byte("\n")))
}
