package topics

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// cluster starts a one-broker kfake cluster and returns it with an admin
// client; both are closed when the test ends.
func cluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, admin(t, c.ListenAddrs()...)
}

func admin(t *testing.T, seeds ...string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// countCreates counts the CreateTopics requests c receives from now on.
func countCreates(c *kfake.Cluster) *atomic.Int32 {
	var n atomic.Int32
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// state describes the catalog's topics as "name:partitions" plus the
// changelog's and dead letter's cleanup.policy and retention.
type state struct {
	partitions map[string]int32
	configs    map[string]map[string]string
}

func describe(t *testing.T, adm *kadm.Client, n Names) state {
	t.Helper()
	ctx := testCtx(t)
	names := []string{n.Interactions, n.Campaigns, n.Inbox, n.DeadLetter, n.Changelog, n.Decisions}
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...) // uncached, as in Catalog.describe
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	s := state{partitions: map[string]int32{}, configs: map[string]map[string]string{}}
	var existing []string
	for _, name := range names {
		if d, ok := details[name]; ok && d.Err == nil {
			s.partitions[name] = int32(len(d.Partitions))
			existing = append(existing, name)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	for _, rc := range rcs {
		s.configs[rc.Name] = map[string]string{}
		for _, cfg := range rc.Configs {
			if cfg.Value != nil && (cfg.Key == "cleanup.policy" || cfg.Key == "retention.ms" || cfg.Key == "compression.type") {
				s.configs[rc.Name][cfg.Key] = *cfg.Value
			}
		}
	}
	return s
}

func TestNewNames(t *testing.T) {
	for _, tc := range []struct {
		prefix, group string
		want          Names
	}{
		{"", "sponsor", Names{"interactions", "campaigns", "inbox", "deadletter", "sponsor-state-changelog", "decisions"}},
		{"staging.", "blue", Names{"staging.interactions", "staging.campaigns", "staging.inbox", "staging.deadletter", "staging.blue-state-changelog", "staging.decisions"}},
	} {
		if got := NewNames(tc.prefix, tc.group); got != tc.want {
			t.Errorf("NewNames(%q, %q) = %+v, want %+v", tc.prefix, tc.group, got, tc.want)
		}
	}
}

// TestRunNames pins every name a run derives, byte for byte: they name
// existing groups, changelogs and transactional ids on running clusters.
func TestRunNames(t *testing.T) {
	for _, tc := range []struct {
		run          Run
		group, txnID string
		want         Names
	}{
		{Run{}, "sponsor", "sponsor-i1", NewNames("", "sponsor")},
		{Run{Group: "sponsor"}, "sponsor", "sponsor-i1", Names{"interactions", "campaigns", "inbox", "deadletter", "sponsor-state-changelog", "decisions"}},
		{Run{Prefix: "staging.", Group: "blue"}, "blue", "blue-i1", NewNames("staging.", "blue")},
		{Run{Group: "sponsor", Shadow: "x"}, "sponsor-shadow-x", "sponsor-shadow-x-i1",
			Names{"interactions", "campaigns", "shadow-x-inbox", "shadow-x-deadletter", "sponsor-shadow-x-state-changelog", "shadow-x-decisions"}},
		{Run{Prefix: "p.", Group: "g", Shadow: "policy-v2"}, "g-shadow-policy-v2", "g-shadow-policy-v2-i1",
			Names{"p.interactions", "p.campaigns", "p.shadow-policy-v2-inbox", "p.shadow-policy-v2-deadletter", "p.g-shadow-policy-v2-state-changelog", "p.shadow-policy-v2-decisions"}},
	} {
		if got := tc.run.ConsumerGroup(); got != tc.group {
			t.Errorf("%+v.ConsumerGroup() = %q, want %q", tc.run, got, tc.group)
		}
		if got := tc.run.TransactionalID("i1"); got != tc.txnID {
			t.Errorf("%+v.TransactionalID(i1) = %q, want %q", tc.run, got, tc.txnID)
		}
		if got := tc.run.Names(); got != tc.want {
			t.Errorf("%+v.Names() = %+v, want %+v", tc.run, got, tc.want)
		}
	}
	if err := (Run{Shadow: "a b"}).Validate(); err == nil {
		t.Error(`Run{Shadow: "a b"}.Validate() = nil, want an error`)
	}
	if err := (Run{Shadow: "policy-v2.1_x"}).Validate(); err != nil {
		t.Errorf("Run{Shadow: policy-v2.1_x}.Validate() = %v, want nil", err)
	}
}

func TestEnsureCreatesAllOnFreshCluster(t *testing.T) {
	c, adm := cluster(t)
	creates := countCreates(c)
	cat := Catalog{Names: NewNames("", "sponsor"), Partitions: 4, ReplicationFactor: 1}

	n, err := cat.Ensure(testCtx(t), adm, true)
	if err != nil {
		t.Fatalf("Ensure on a fresh cluster: %v", err)
	}
	if n != 4 {
		t.Errorf("Ensure returned %d partitions, want 4 (Catalog.Partitions)", n)
	}
	got := describe(t, adm, cat.Names)
	want := map[string]int32{"interactions": 4, "campaigns": 1, "inbox": 4, "deadletter": 4, "sponsor-state-changelog": 4, "decisions": 4}
	for name, p := range want {
		if got.partitions[name] != p {
			t.Errorf("topic %s has %d partitions, want %d", name, got.partitions[name], p)
		}
	}
	if p := got.configs["sponsor-state-changelog"]["cleanup.policy"]; p != "compact" {
		t.Errorf("changelog cleanup.policy = %q, want compact", p)
	}
	for _, name := range []string{"sponsor-state-changelog", "decisions"} {
		if c := got.configs[name]["compression.type"]; c != "zstd" {
			t.Errorf("%s compression.type = %q, want zstd", name, c)
		}
	}
	if c := got.configs["inbox"]["compression.type"]; c != "producer" {
		t.Errorf("inbox compression.type = %q, want the broker's default, producer", c)
	}
	if p := got.configs["deadletter"]["cleanup.policy"]; p != "delete" {
		t.Errorf("deadletter cleanup.policy = %q, want delete", p)
	}
	if r, want := got.configs["deadletter"]["retention.ms"], strconv.FormatInt(DeadLetterRetention.Milliseconds(), 10); r != want {
		t.Errorf("deadletter retention.ms = %q, want %q", r, want)
	}
	if p := got.configs["decisions"]["cleanup.policy"]; p != "delete" {
		t.Errorf("decisions cleanup.policy = %q, want delete", p)
	}
	if r, want := got.configs["decisions"]["retention.ms"], strconv.FormatInt(DecisionsRetention.Milliseconds(), 10); r != want {
		t.Errorf("decisions retention.ms = %q, want %q", r, want)
	}
	if got := creates.Load(); got != 6 {
		t.Errorf("first Ensure sent %d CreateTopics requests, want 6 (one per topic)", got)
	}

	// A second Ensure (a restart, another instance) changes nothing.
	before := creates.Load()
	n, err = cat.Ensure(testCtx(t), adm, true)
	if err != nil || n != 4 {
		t.Fatalf("second Ensure = %d, %v; want 4, nil", n, err)
	}
	if got := creates.Load() - before; got != 0 {
		t.Errorf("second Ensure sent %d CreateTopics requests, want none", got)
	}
}

func TestEnsureDefaultPartitions(t *testing.T) {
	_, adm := cluster(t)
	n, err := Catalog{Names: NewNames("", "g")}.Ensure(testCtx(t), adm, true)
	if err != nil || n != DefaultPartitions {
		t.Fatalf("Ensure with Partitions 0 = %d, %v; want %d, nil", n, err, DefaultPartitions)
	}
}

func TestEnsureFollowsExistingInteractions(t *testing.T) {
	// Interactions already exists with 3 partitions: its count wins over
	// Catalog.Partitions, and the owned topics follow it.
	_, adm := cluster(t, kfake.SeedTopics(3, "interactions", "campaigns"))
	cat := Catalog{Names: NewNames("", "sponsor"), Partitions: 8}
	n, err := cat.Ensure(testCtx(t), adm, false)
	if err != nil || n != 3 {
		t.Fatalf("Ensure = %d, %v; want 3, nil", n, err)
	}
	got := describe(t, adm, cat.Names)
	for _, name := range []string{"inbox", "sponsor-state-changelog", "deadletter", "decisions"} {
		if got.partitions[name] != 3 {
			t.Errorf("topic %s has %d partitions, want 3 like interactions", name, got.partitions[name])
		}
	}
}

func TestEnsureRefusesMissingInputs(t *testing.T) {
	c, adm := cluster(t, kfake.SeedTopics(4, "campaigns"))
	creates := countCreates(c)
	cat := Catalog{Names: NewNames("", "sponsor")}

	_, err := cat.Ensure(testCtx(t), adm, false)
	if !errors.Is(err, ErrMissingTopic) {
		t.Fatalf("Ensure without interactions and createInputs false = %v, want ErrMissingTopic", err)
	}
	var te *TopicError
	if !errors.As(err, &te) || te.Topic != "interactions" || te.Role != RoleInteractions {
		t.Errorf("error %v does not name the interactions topic", err)
	}
	if !strings.Contains(err.Error(), "kafka-topics.sh") || !strings.Contains(err.Error(), "--topic interactions") {
		t.Errorf("error %q does not say how to create the topic", err)
	}
	if strings.Contains(err.Error(), `"campaigns"`) {
		t.Errorf("error %q complains about campaigns, which exists", err)
	}
	if n := creates.Load(); n != 0 {
		t.Errorf("Ensure sent %d CreateTopics requests; it must create nothing while an input is missing", n)
	}

	// Both missing: both are reported.
	_, adm = cluster(t)
	_, err = cat.Ensure(testCtx(t), adm, false)
	for _, name := range []string{`"interactions"`, `"campaigns"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not report missing %s", err, name)
		}
	}
}

func TestEnsureRefusesInboxWithOtherPartitionCount(t *testing.T) {
	for _, inbox := range []int32{2, 8} { // fewer (can be grown) and more (cannot shrink)
		t.Run(strconv.Itoa(int(inbox)), func(t *testing.T) {
			c, adm := cluster(t, kfake.SeedTopics(4, "interactions", "campaigns"))
			if err := c.CreateTopic("inbox", inbox, nil); err != nil {
				t.Fatalf("seed inbox: %v", err)
			}
			_, err := Catalog{Names: NewNames("", "sponsor")}.Ensure(testCtx(t), adm, false)
			if !errors.Is(err, ErrCoPartitioning) {
				t.Fatalf("Ensure with inbox of %d partitions and interactions of 4 = %v, want ErrCoPartitioning", inbox, err)
			}
			var te *TopicError
			if !errors.As(err, &te) || te.Topic != "inbox" {
				t.Fatalf("error %v does not name inbox", err)
			}
			msg := err.Error()
			for _, want := range []string{"it has " + strconv.Itoa(int(inbox)) + " partitions", "interactions has 4", "kafka-topics.sh"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if inbox < 4 && !strings.Contains(msg, "--partitions 4") {
				t.Errorf("error %q does not say how to add partitions", msg)
			}
			if got := describe(t, adm, NewNames("", "sponsor")).partitions["inbox"]; got != inbox {
				t.Errorf("Ensure changed inbox to %d partitions; it must leave an existing topic alone", got)
			}
		})
	}
}

func TestEnsureRefusesChangelogNotCompacted(t *testing.T) {
	for _, policy := range []string{"", "delete", "compact,delete"} {
		t.Run(policy, func(t *testing.T) {
			c, adm := cluster(t, kfake.SeedTopics(4, "interactions", "campaigns"))
			var cfg map[string]string
			if policy != "" {
				cfg = map[string]string{"cleanup.policy": policy}
			}
			if err := c.CreateTopic("sponsor-state-changelog", 4, cfg); err != nil {
				t.Fatalf("seed changelog: %v", err)
			}
			_, err := Catalog{Names: NewNames("", "sponsor")}.Ensure(testCtx(t), adm, false)
			if !errors.Is(err, ErrNotCompacted) {
				t.Fatalf("Ensure with changelog cleanup.policy %q = %v, want ErrNotCompacted", policy, err)
			}
			if errors.Is(err, ErrCoPartitioning) {
				t.Errorf("error %v reports co-partitioning, but the changelog has 4 partitions like interactions", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "kafka-configs.sh") || !strings.Contains(msg, "cleanup.policy=compact") {
				t.Errorf("error %q does not say how to fix the policy", msg)
			}
		})
	}
}

func TestEnsureReportsEveryProblem(t *testing.T) {
	c, adm := cluster(t, kfake.SeedTopics(4, "interactions", "campaigns"))
	if err := c.CreateTopic("inbox", 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic("sponsor-state-changelog", 6, map[string]string{"cleanup.policy": "delete"}); err != nil {
		t.Fatal(err)
	}
	_, err := Catalog{Names: NewNames("", "sponsor")}.Ensure(testCtx(t), adm, false)
	if !errors.Is(err, ErrCoPartitioning) || !errors.Is(err, ErrNotCompacted) {
		t.Fatalf("Ensure = %v, want both ErrCoPartitioning and ErrNotCompacted", err)
	}
	for _, want := range []string{`inbox topic "inbox"`, `changelog topic "sponsor-state-changelog": not co-partitioned`, `changelog topic "sponsor-state-changelog": changelog is not compacted`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

func TestEnsureAcceptsAnyDeadLetter(t *testing.T) {
	c, adm := cluster(t, kfake.SeedTopics(4, "interactions", "campaigns"))
	if err := c.CreateTopic("deadletter", 1, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := (Catalog{Names: NewNames("", "sponsor")}).Ensure(testCtx(t), adm, false); err != nil || n != 4 {
		t.Fatalf("Ensure with a one-partition deadletter = %d, %v; want 4, nil", n, err)
	}
}

func TestEnsureConcurrentInstances(t *testing.T) {
	// Several instances start at once on an empty cluster: each either
	// creates a topic or finds that another one did, and all agree.
	c, _ := cluster(t)
	cat := Catalog{Names: NewNames("", "sponsor"), Partitions: 5, ReplicationFactor: -1}
	const instances = 6
	var wg sync.WaitGroup
	ns := make([]int32, instances)
	errs := make([]error, instances)
	for i := range instances {
		adm := admin(t, c.ListenAddrs()...)
		wg.Go(func() { ns[i], errs[i] = cat.Ensure(testCtx(t), adm, true) })
	}
	wg.Wait()
	for i := range instances {
		if errs[i] != nil || ns[i] != 5 {
			t.Errorf("instance %d: Ensure = %d, %v; want 5, nil", i, ns[i], errs[i])
		}
	}
}

func TestEnsureTopicCreatedByAnotherInstance(t *testing.T) {
	// Between Ensure's look and its create, another instance creates the
	// changelog, with 2 partitions: the create fails with
	// TOPIC_ALREADY_EXISTS, and Ensure must check the topic that won.
	c, adm := cluster(t, kfake.SeedTopics(4, "interactions", "campaigns"))
	c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.CreateTopicsRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic != "sponsor-state-changelog" {
			c.KeepControl()
			return nil, nil, false
		}
		// The other instance's create lands just after ours is answered.
		go func() {
			_ = c.CreateTopic("sponsor-state-changelog", 2, map[string]string{"cleanup.policy": "compact"})
		}()
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = req.Topics[0].Topic
		rt.ErrorCode = kerr.TopicAlreadyExists.Code
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	_, err := Catalog{Names: NewNames("", "sponsor")}.Ensure(testCtx(t), adm, false)
	if !errors.Is(err, ErrCoPartitioning) || errors.Is(err, ErrNotCompacted) {
		t.Fatalf("Ensure racing another instance's 2-partition changelog = %v, want only ErrCoPartitioning", err)
	}
}

func TestSpecs(t *testing.T) {
	specs := Catalog{Names: NewNames("p.", "g")}.Specs(7)
	owned := map[string]bool{}
	for _, s := range specs {
		owned[s.Role] = s.Owned
		if s.ReplicationFactor != -1 {
			t.Errorf("%s: replication factor %d, want -1 (broker default) for a zero Catalog.ReplicationFactor", s.Name, s.ReplicationFactor)
		}
	}
	want := map[string]bool{RoleInteractions: false, RoleCampaigns: false, RoleInbox: true, RoleDeadLetter: true, RoleChangelog: true}
	for role, o := range want {
		if got, ok := owned[role]; !ok || got != o {
			t.Errorf("role %s: owned = %v (present %v), want %v", role, got, ok, o)
		}
	}
	// zstd on the topics only this project reads; the others keep the
	// broker's default (the producer's codec).
	for _, s := range specs {
		got := ""
		if v := s.Configs["compression.type"]; v != nil {
			got = *v
		}
		want := ""
		if s.Role == RoleChangelog || s.Role == RoleDecisions {
			want = "zstd"
		}
		if got != want {
			t.Errorf("%s: compression.type %q, want %q", s.Name, got, want)
		}
	}
}

// TestEnsureRealKafka runs Ensure against a real broker when
// KAFKA_BROKERS names one (deploy/kafka/up.sh starts one on
// 127.0.0.1:9092). It uses a fresh prefix and deletes its topics afterwards.
func TestEnsureRealKafka(t *testing.T) {
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		t.Skip("KAFKA_BROKERS not set (e.g. 127.0.0.1:9092 after deploy/kafka/up.sh)")
	}
	adm := admin(t, strings.Split(brokers, ",")...)
	prefix := "topics-test-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
	cat := Catalog{Names: NewNames(prefix, "sponsor"), Partitions: 3}
	n := cat.Names
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, n.Interactions, n.Campaigns, n.Inbox, n.DeadLetter, n.Changelog, prefix+"other-state-changelog")
	})

	if got, err := cat.Ensure(testCtx(t), adm, true); err != nil || got != 3 {
		t.Fatalf("first Ensure = %d, %v; want 3, nil", got, err)
	}
	if got, err := cat.Ensure(testCtx(t), adm, false); err != nil || got != 3 {
		t.Fatalf("second Ensure = %d, %v; want 3, nil", got, err)
	}
	s := describe(t, adm, n)
	if s.configs[n.Changelog]["cleanup.policy"] != "compact" || s.configs[n.Changelog]["compression.type"] != "zstd" || s.partitions[n.Inbox] != 3 {
		t.Errorf("real Kafka topics after Ensure: %+v", s)
	}

	// A changelog made by hand without compaction is refused.
	other := Catalog{Names: NewNames(prefix, "other"), Partitions: 3}
	if _, err := adm.CreateTopic(testCtx(t), 3, -1, nil, other.Names.Changelog); err != nil {
		t.Fatalf("create plain changelog: %v", err)
	}
	if _, err := other.Ensure(testCtx(t), adm, false); !errors.Is(err, ErrNotCompacted) {
		t.Errorf("Ensure with an uncompacted changelog on real Kafka = %v, want ErrNotCompacted", err)
	}
}

func TestEnsureWithoutDecisions(t *testing.T) {
	// Decisions turned off: Ensure neither creates nor checks the topic.
	_, adm := cluster(t, kfake.SeedTopics(3, "interactions", "campaigns", "decisions"))
	names := NewNames("", "sponsor")
	names.Decisions = ""
	if _, err := (Catalog{Names: names}).Ensure(testCtx(t), adm, false); err != nil {
		t.Fatalf("Ensure without decisions: %v", err)
	}
}

func TestEnsureRefusesDecisionsPartitionMismatch(t *testing.T) {
	_, adm := cluster(t, kfake.SeedTopics(3, "interactions", "campaigns"))
	if _, err := adm.CreateTopic(testCtx(t), 2, 1, nil, "decisions"); err != nil {
		t.Fatal(err)
	}
	_, err := Catalog{Names: NewNames("", "sponsor")}.Ensure(testCtx(t), adm, false)
	var te *TopicError
	if !errors.Is(err, ErrCoPartitioning) || !errors.As(err, &te) || te.Topic != "decisions" {
		t.Fatalf("Ensure with a 2-partition decisions topic and 3 interactions partitions = %v, want ErrCoPartitioning on decisions", err)
	}
}

// TestSpecsDecisionsRetention checks that the decisions topic's retention
// is its own setting, and leaves the inbox's (broker default) alone.
func TestSpecsDecisionsRetention(t *testing.T) {
	for _, tc := range []struct {
		set  time.Duration
		want string
	}{
		{0, strconv.FormatInt(DecisionsRetention.Milliseconds(), 10)},
		{365 * 24 * time.Hour, "31536000000"},
		{-1, "-1"},
	} {
		for _, s := range (Catalog{Names: NewNames("", "g"), DecisionsRetention: tc.set}).Specs(3) {
			switch s.Role {
			case RoleDecisions:
				if got := s.Configs["retention.ms"]; got == nil || *got != tc.want {
					t.Errorf("DecisionsRetention %v: decisions retention.ms %v, want %s", tc.set, got, tc.want)
				}
			case RoleInbox:
				if s.Configs["retention.ms"] != nil {
					t.Errorf("DecisionsRetention %v: the inbox has retention.ms %s, want the broker's default", tc.set, *s.Configs["retention.ms"])
				}
			}
		}
	}
}
