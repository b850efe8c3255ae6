// Command waitkafka waits until a Kafka cluster is ready for the pipeline and,
// with -smoke, proves that it runs what the pipeline relies on.
//
// Ready means: the cluster answers metadata requests, lists the expected
// number of brokers and a controller, and can create and delete a topic with
// the given replication factor. up.sh and cluster-up.sh run it after the
// port opens, because a KRaft broker listens before it can serve requests.
//
// -smoke then runs, on fresh topics it deletes afterwards: a transactional
// producer that commits some records and aborts others; a consumer group
// session (kgo.GroupTransactSession, as the pipeline uses) that reads them
// read_committed and writes them on inside transactions with its offsets;
// and a read_committed check that exactly the committed records came
// through, once each, and that the group's offsets were committed.
//
// It exits 0 on success and 1, with the reason, on failure or time-out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	var (
		brokers = flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
		expect  = flag.Int("expect-brokers", 1, "number of brokers the cluster must list")
		rf      = flag.Int("replication-factor", 1, "replication factor of the probe and smoke topics")
		timeout = flag.Duration("timeout", 2*time.Minute, "give up after this long")
		smoke   = flag.Bool("smoke", false, "also check transactions, read_committed and consumer groups")
	)
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	seeds := strings.Split(*brokers, ",")
	start := time.Now()
	if err := waitReady(ctx, seeds, *expect, int16(*rf)); err != nil {
		fmt.Fprintf(os.Stderr, "waitkafka: %s not ready after %s: %v\n", *brokers, time.Since(start).Round(time.Millisecond), err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "waitkafka: %s ready (%d broker(s)) after %s\n", *brokers, *expect, time.Since(start).Round(time.Millisecond))
	if !*smoke {
		return
	}
	start = time.Now()
	if err := smokeTest(ctx, seeds, int16(*rf)); err != nil {
		fmt.Fprintf(os.Stderr, "waitkafka: smoke test failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "waitkafka: smoke test passed (transactions, read_committed, group transact session) in %s\n", time.Since(start).Round(time.Millisecond))
}

// waitReady retries until the cluster is ready or ctx ends; it returns the
// last reason it was not ready.
func waitReady(ctx context.Context, seeds []string, expect int, rf int16) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	probe := "__sponsor_waitkafka_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var last error
	for {
		if last = probeOnce(ctx, adm, probe, expect, rf); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func probeOnce(ctx context.Context, adm *kadm.Client, probe string, expect int, rf int16) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := adm.BrokerMetadata(rctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(m.Brokers) < expect {
		var ids []string
		for _, b := range m.Brokers {
			ids = append(ids, fmt.Sprint(b.NodeID))
		}
		return fmt.Errorf("%d of %d brokers registered (node ids: %s)", len(m.Brokers), expect, strings.Join(ids, ","))
	}
	if m.Controller < 0 {
		return errors.New("no active controller yet")
	}
	if _, err := adm.CreateTopic(rctx, 1, rf, nil, probe); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create probe topic: %w", err)
	}
	if _, err := adm.DeleteTopic(rctx, probe); err != nil {
		return fmt.Errorf("delete probe topic: %w", err)
	}
	return nil
}

func smokeTest(ctx context.Context, seeds []string, rf int16) error {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out, group := "sponsor-smoke-in-"+suffix, "sponsor-smoke-out-"+suffix, "sponsor-smoke-"+suffix

	admCl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopics(ctx, 3, rf, nil, in, out); err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(dctx, in, out)
		_, _ = adm.DeleteGroup(dctx, group)
	}()

	// 1. A transactional producer commits 30 records and aborts 10.
	const committed = 30
	p, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID("sponsor-smoke-p-"+suffix), kgo.DefaultProduceTopic(in))
	if err != nil {
		return err
	}
	defer p.Close()
	produce := func(prefix string, n int, commit kgo.TransactionEndTry) error {
		if err := p.BeginTransaction(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		for i := range n {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("u%d", i)), Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
			if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
				return fmt.Errorf("produce: %w", err)
			}
		}
		if err := p.EndTransaction(ctx, commit); err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		return nil
	}
	if err := produce("commit", committed, kgo.TryCommit); err != nil {
		return err
	}
	if err := produce("abort", 10, kgo.TryAbort); err != nil {
		return err
	}

	// 2. A group transact session consumes read_committed and copies to out,
	// committing its offsets inside each transaction.
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(seeds...),
		kgo.TransactionalID("sponsor-smoke-s-"+suffix),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.DefaultProduceTopic(out),
	)
	if err != nil {
		return err
	}
	defer s.Close()
	copied := 0
	for copied < committed {
		fs := s.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("group session copied %d of %d records: %w", copied, committed, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return fmt.Errorf("group session fetch: %v", errs[0].Err)
		}
		if err := s.Begin(); err != nil {
			return fmt.Errorf("session begin: %w", err)
		}
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if strings.HasPrefix(string(r.Value), "abort") {
				perr = fmt.Errorf("read_committed consumer saw aborted record %q", r.Value)
			}
			s.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil && perr == nil {
					perr = err
				}
			})
		})
		ok, err := s.End(ctx, kgo.TryCommit)
		if perr != nil {
			return perr
		}
		if err != nil {
			return fmt.Errorf("session end: %w", err)
		}
		if ok {
			copied += fs.NumRecords()
		}
	}
	s.Close()

	// 3. A plain read_committed consumer sees every committed record once.
	c, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer c.Close()
	seen := map[string]int{}
	for len(seen) < committed {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %d of %d copied records: %w", len(seen), committed, err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	for v, n := range seen {
		if n != 1 || !strings.HasPrefix(v, "commit") {
			return fmt.Errorf("out has %q %d times, want committed records once each", v, n)
		}
	}

	// 4. The group's committed offsets reach the end of in.
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("fetch group offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	var missing []string
	ends.Each(func(e kadm.ListedOffset) {
		o, ok := offs.Lookup(e.Topic, e.Partition)
		// The end includes the abort transaction's records and markers; the
		// session commits past the last committed record it saw, which is at
		// most the end.
		if e.Offset > 0 && (!ok || o.At <= 0) {
			missing = append(missing, fmt.Sprintf("%d (end %d, committed %v)", e.Partition, e.Offset, o.At))
		}
	})
	if len(missing) > 0 {
		return fmt.Errorf("group %s committed no offset for partitions %v", group, missing)
	}
	return nil
}
