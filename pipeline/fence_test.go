package pipeline

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFenceDead leaves open a transaction of a dead instance of the group
// on the inbox and one of a live static member, and checks that fenceDead
// aborts the dead one's only: its records are never read committed, the
// live one's transaction still commits.
func TestFenceDead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := &Config{Group: "g", TopicPrefix: "t-", TransactionTimeout: 60 * time.Second}
	names := cfg.Run().Names()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, names.Interactions, names.Inbox, names.Changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	base := []kgo.Opt{kgo.SeedBrokers(cluster.ListenAddrs()...)}

	// The live static member "live", in the group.
	member, err := kgo.NewClient(append(base, kgo.ConsumerGroup(cfg.Run().ConsumerGroup()), kgo.InstanceID("live"),
		kgo.ConsumeTopics(names.Interactions))...)
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	go member.PollFetches(ctx) // joins the group
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	for {
		groups, err := adm.DescribeGroups(ctx, cfg.Run().ConsumerGroup())
		if err == nil && len(groups[cfg.Run().ConsumerGroup()].Members) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the live member never joined")
		}
		time.Sleep(100 * time.Millisecond)
	}

	open := func(instance string) *kgo.Client {
		cl, err := kgo.NewClient(append(base, kgo.TransactionalID(cfg.Run().TransactionalID(instance)),
			kgo.TransactionTimeout(time.Minute), kgo.DefaultProduceTopic(names.Inbox), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte(instance)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	dead := open("dead")
	defer dead.Close()
	live := open("live")
	defer live.Close()

	h := &handover{cfg: cfg, log: slog.Default(), stats: &Stats{}, names: names, txnID: cfg.Run().TransactionalID("me"), adm: adm, base: base}
	h.fenceDead(ctx, []int32{0})
	if got := h.stats.FencedTransactions.Load(); got != 1 {
		t.Fatalf("fenced %d transactions, want 1 (the dead instance's)", got)
	}
	if err := dead.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the dead instance's transaction committed after it was fenced")
	}
	if err := live.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("the live member's transaction: %v", err)
	}
	got := readCommitted(ctx, t, base, names.Inbox)
	if len(got) != 1 || got[0] != "live" {
		t.Fatalf("read committed %q, want only the live member's record", got)
	}
}

// readCommitted returns the values of the committed records of topic's
// partition 0, up to a sentinel record it writes (not transactional) at
// its end.
func readCommitted(ctx context.Context, t *testing.T, base []kgo.Opt, topic string) []string {
	t.Helper()
	cl, err := kgo.NewClient(append(base, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("end")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (read %q)", topic, ctx.Err(), out)
		}
		end := false
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "end" {
				end = true
			} else if !end {
				out = append(out, string(r.Value))
			}
		})
		if end {
			return out
		}
	}
}
