package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// UnknownTopicError is the error of a Reader given a topic the cluster does
// not have.
type UnknownTopicError struct {
	Topic string
}

func (e *UnknownTopicError) Error() string { return fmt.Sprintf("topic %q does not exist", e.Topic) }

// Stop is what a Reader's record function returns to end Read early; Read
// then returns nil.
var Stop = errors.New("stop reading")

// Position is where a Reader stands in one partition.
type Position struct {
	Topic     string
	Partition int32
	// Next is the next offset to read: after the last record or
	// transaction marker read. It is End once the partition is read.
	Next int64
	// End is the offset the partition is read to.
	End int64
}

// A Reader reads topics whole the way a downstream consumer sees them
// (read_committed: never a record of an aborted or still-open transaction):
// every committed record of each partition from its start offset to its
// last stable offset (LSO) as of the moment Read begins, and none after it.
//
// Each partition stops exactly at its end. A partition whose records end
// before it with something no read_committed consumer is given (the
// records of an aborted transaction whose marker is past the end, a tail
// removed by compaction) is probed once it has been quiet for a while, and
// ends when nothing readable is left before its end: Read never waits for
// an offset that will not be delivered. Transaction markers count as read
// but are not passed on.
//
// A Reader is a description; Read may be called more than once, not
// concurrently.
type Reader struct {
	// Opts are the Kafka client options: seed brokers, TLS, SASL, and any
	// fetch tuning (kgo.FetchMaxBytes). The Reader adds the options that
	// make it a read_committed consumer of the partitions. Required.
	Opts []kgo.Opt
	// Topics are the topics to read, each with the partitions to read; a
	// nil or empty list reads all of the topic's partitions. Required.
	Topics map[string][]int32
	// Starts, if set, gives the offset to start partitions at; a partition
	// without one starts at its log start offset, and so does one whose
	// start is before it. A partition whose start is at or after its end
	// has nothing to read.
	Starts map[string]map[int32]int64
	// Ends, if set, gives the offset to stop partitions at instead of
	// their last stable offset; it must not be beyond the last stable
	// offset, or Read waits for the transaction that holds it to end.
	Ends map[string]map[int32]int64
	// Follow keeps reading after the ends, every partition, until the
	// context is done: a tail -f. Without it, Read returns once every
	// partition is read to its end.
	Follow bool
	// Progress, if set, is called after each fetch for each partition the
	// fetch moved, and once with Next == End when a partition is read to
	// its end (not in Follow mode). An error stops Read and is returned.
	Progress func(Position) error
	// Quiet is how long a partition that is not read to its end may go
	// without a record before Read probes whether anything readable is
	// left before its end. Default 500ms.
	Quiet time.Duration
}

// ReadCommitted reads the listed partitions of topic (nil: all), from
// their start to their last stable offsets of now, read_committed, calling
// fn for every committed data record: see [Reader].
func ReadCommitted(ctx context.Context, opts []kgo.Opt, topic string, partitions []int32, fn func(*kgo.Record) error) error {
	return (&Reader{Opts: opts, Topics: map[string][]int32{topic: partitions}}).Read(ctx, fn)
}

// FetchError returns the first error of fs, naming its partition, other
// than the end of a poll's own deadline (a poll bounded by a timeout that
// found nothing); nil if there is none.
func FetchError(fs kgo.Fetches) error {
	var ferr error
	fs.EachError(func(t string, p int32, err error) {
		if ferr == nil && !errors.Is(err, context.DeadlineExceeded) {
			ferr = fmt.Errorf("read %s/%d: %w", t, p, err)
		}
	})
	return ferr
}

// reading is the state of one partition being read.
type reading struct {
	topic      string
	partition  int32
	id         kadm.TopicID
	leader     int32
	next, end  int64
	lastRecord time.Time // when the partition last moved (or the read began)
}

// Read calls fn for every committed data record of r's partitions, in
// offset order within a partition, until each is read to its end (or, in
// Follow mode, until ctx is done), or until fn returns [Stop]. It returns
// the first other error of fn, of
// Progress or of the read, or ctx's error when ctx ends first; a topic the
// cluster does not have is an [*UnknownTopicError].
func (r *Reader) Read(ctx context.Context, fn func(*kgo.Record) error) error {
	if len(r.Topics) == 0 {
		return errors.New("read committed: no topic")
	}
	quiet := r.Quiet
	if quiet <= 0 {
		quiet = 500 * time.Millisecond
	}
	cl, err := kgo.NewClient(r.Opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	parts, err := r.plan(ctx, kadm.NewClient(cl))
	if err != nil {
		return err
	}
	consume := map[string]map[int32]kgo.Offset{}
	for _, p := range parts {
		if consume[p.topic] == nil {
			consume[p.topic] = map[int32]kgo.Offset{}
		}
		consume[p.topic][p.partition] = kgo.NewOffset().At(p.next)
	}
	if len(consume) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(append([]kgo.Opt(nil), r.Opts...),
		kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers move a partition's position like records: a partition
		// whose last records before its end are markers is read to it.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer rd.Close()

	type tp struct {
		t string
		p int32
	}
	left := map[tp]*reading{} // the partitions not read to their end yet
	if !r.Follow {
		for _, p := range parts {
			left[tp{p.topic, p.partition}] = p
		}
	}
	done := func(p *reading) error {
		p.next = p.end
		delete(left, tp{p.topic, p.partition})
		rd.RemoveConsumePartitions(map[string][]int32{p.topic: {p.partition}})
		if r.Progress != nil {
			return r.Progress(Position{Topic: p.topic, Partition: p.partition, Next: p.end, End: p.end})
		}
		return nil
	}
	for r.Follow || len(left) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, quiet)
		fs := rd.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := FetchError(fs); err != nil {
			return err
		}
		now := time.Now()
		var rerr error
		fs.EachPartition(func(f kgo.FetchTopicPartition) {
			if rerr != nil || len(f.Records) == 0 {
				return
			}
			p, open := left[tp{f.Topic, f.Partition}]
			if !open && !r.Follow {
				return // read to its end already: what follows is past it
			}
			moved := false
			for _, rec := range f.Records {
				if open && rec.Offset >= p.end {
					// Everything before the end has been delivered.
					rerr = done(p)
					return
				}
				if open {
					p.next, p.lastRecord, moved = rec.Offset+1, now, true
				}
				if !rec.Attrs.IsControl() {
					if rerr = fn(rec); rerr != nil {
						return
					}
				}
				if open && p.next >= p.end {
					rerr = done(p)
					return
				}
			}
			if moved && r.Progress != nil {
				rerr = r.Progress(Position{Topic: p.topic, Partition: p.partition, Next: p.next, End: p.end})
			}
		})
		if errors.Is(rerr, Stop) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		for _, p := range left {
			if now.Sub(p.lastRecord) < quiet {
				continue
			}
			drained, err := probe(ctx, cl, p)
			if err != nil {
				// A leader that moved: the consumer follows it, and the
				// next probe asks the new one.
				if p.leader, err = leader(ctx, cl, p); err != nil {
					return err
				}
				continue
			}
			p.lastRecord = now
			if drained {
				if err := done(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// plan lists the partitions to read, their leaders, starts and ends, and
// returns those with something to read (all of them in Follow mode).
func (r *Reader) plan(ctx context.Context, adm *kadm.Client) ([]*reading, error) {
	topics := make([]string, 0, len(r.Topics))
	for t := range r.Topics {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list topics %v: %w", topics, err)
	}
	for _, t := range topics {
		d, ok := td[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return nil, &UnknownTopicError{Topic: t}
		}
		if d.Err != nil {
			return nil, fmt.Errorf("topic %s: %w", t, d.Err)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the start offsets of %v: %w", topics, err)
	}
	// Under read_committed, ListOffsets of the latest offset is the last
	// stable offset.
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the last stable offsets of %v: %w", topics, err)
	}
	now := time.Now()
	var out []*reading
	for _, t := range topics {
		ps := r.Topics[t]
		if len(ps) == 0 {
			ps = td[t].Partitions.Numbers()
		}
		for _, p := range ps {
			pd, ok := td[t].Partitions[p]
			if !ok {
				return nil, fmt.Errorf("topic %s has no partition %d", t, p)
			}
			s, ok := starts.Lookup(t, p)
			if !ok || s.Err != nil {
				return nil, fmt.Errorf("start offset of %s/%d: %w", t, p, lookupErr(s.Err))
			}
			e, ok := stable.Lookup(t, p)
			if !ok || e.Err != nil {
				return nil, fmt.Errorf("last stable offset of %s/%d: %w", t, p, lookupErr(e.Err))
			}
			rd := &reading{topic: t, partition: p, id: td[t].ID, leader: pd.Leader, next: s.Offset, end: e.Offset, lastRecord: now}
			if o, ok := r.Starts[t][p]; ok && o > rd.next {
				rd.next = o
			}
			if o, ok := r.Ends[t][p]; ok {
				rd.end = o
			}
			if rd.next < rd.end || r.Follow {
				out = append(out, rd)
			}
		}
	}
	return out, nil
}

func lookupErr(err error) error {
	if err == nil {
		return errors.New("not listed")
	}
	return err
}

// probe reports whether nothing readable is left in p between p.next and
// p.end: it fetches that range from the partition's leader with
// read_committed and parses it as the consumer does, records of aborted
// transactions dropped, markers kept.
func probe(ctx context.Context, cl *kgo.Client, p *reading) (bool, error) {
	for from := p.next; from < p.end; {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = 1 << 20
		req.IsolationLevel = 1
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = p.topic, p.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p.partition
		rp.FetchOffset = from
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(p.leader)))
		if err != nil {
			return false, fmt.Errorf("probe %s/%d: %w", p.topic, p.partition, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return false, fmt.Errorf("probe %s/%d: %w", p.topic, p.partition, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return false, fmt.Errorf("probe %s/%d: the broker answered for %d topics", p.topic, p.partition, len(resp.Topics))
		}
		part := &resp.Topics[0].Partitions[0]
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			KeepControlRecords: true,
			Offset:             from,
			IsolationLevel:     kgo.ReadCommitted(),
			Topic:              p.topic,
			Partition:          p.partition,
		}, part, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			return false, fmt.Errorf("probe %s/%d: %w", p.topic, p.partition, fp.Err)
		}
		for _, rec := range fp.Records {
			if rec.Offset >= from && rec.Offset < p.end {
				return false, nil // readable: the consumer delivers it
			}
		}
		if next <= from {
			return false, nil // no progress: ask again later
		}
		from = next
	}
	return true, nil
}

// leader returns the current leader of p.
func leader(ctx context.Context, cl *kgo.Client, p *reading) (int32, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, p.topic)
	if err != nil {
		return -1, fmt.Errorf("list topic %s: %w", p.topic, err)
	}
	pd, ok := td[p.topic].Partitions[p.partition]
	if !ok {
		return -1, fmt.Errorf("topic %s has no partition %d", p.topic, p.partition)
	}
	return pd.Leader, nil
}
