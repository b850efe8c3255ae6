// Package txn finds the Kafka transactions open on the pipeline's topics
// and aborts one that is stuck, for SREs (`sponsor txn list` and `sponsor
// txn abort`).
//
// An open transaction holds each partition it wrote to at its first
// record: the partition's last stable offset (LSO) does not pass it, and a
// read_committed reader (the pipeline, the inbox consumers) reads nothing
// beyond. The coordinator aborts a transaction that outlives its timeout;
// one it does not (a broker bug, a coordinator that lost track of it, a
// producer with a very long timeout that hung) holds its partitions until
// someone writes the abort marker. List finds them with the partition
// leaders' DescribeProducers, and their transactional ids and start times
// with the coordinators' ListTransactions and DescribeTransactions; Abort
// writes the abort marker to one partition with WriteTxnMarkers, as
// Kafka's kafka-transactions.sh abort does (KIP-664).
//
// It is not for the pipeline's runtime: an instance restarted with the same
// identity fences and aborts its own previous transaction at once.
package txn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Open is a transaction open on one partition, as its leader and the
// transaction's coordinator describe it. A transaction over several
// partitions is one Open per partition.
type Open struct {
	Topic     string
	Partition int32
	// Leader is the broker leading the partition, which answered.
	Leader int32

	// ProducerID and ProducerEpoch identify the producer that wrote the
	// transaction's records; CoordinatorEpoch is the coordinator epoch the
	// partition last saw a marker from the producer's coordinator with (-1
	// if none), which an abort marker must carry.
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	// StartOffset is the offset of the transaction's first record on the
	// partition.
	StartOffset int64
	// LastWrite is when the producer last wrote to the partition (the
	// leader's clock).
	LastWrite time.Time

	// TransactionalID is the producer's transactional id, "" when the
	// coordinators do not know the producer id (any more) or could not be
	// asked. State (Ongoing, PrepareAbort...), Started and Timeout are the
	// coordinator's view of the transaction, zero then too.
	TransactionalID string
	State           string
	Started         time.Time
	Timeout         time.Duration

	// LSO and HWM are the partition's last stable offset and high
	// watermark, listed just after the producers were described.
	LSO, HWM int64
}

// HoldsLSO reports whether this transaction is the one holding the
// partition's last stable offset: the oldest open there, at the LSO.
func (o *Open) HoldsLSO() bool { return o.StartOffset == o.LSO }

// Age returns how long the transaction has been open at now: since the
// coordinator started it, or, when the coordinator is unknown, since its
// last write to the partition (at least that long), and whether it is the
// coordinator's figure.
func (o *Open) Age(now time.Time) (time.Duration, bool) {
	if !o.Started.IsZero() {
		return now.Sub(o.Started), true
	}
	return now.Sub(o.LastWrite), false
}

// Listing is the result of List.
type Listing struct {
	// Open is every transaction open on the partitions, by topic,
	// partition and start offset.
	Open []Open
	// Partitions is how many partitions were described.
	Partitions int
	// Notes say what could not be found out (a coordinator that did not
	// answer): the transactions are listed all the same.
	Notes []string
}

// List returns the transactions open on every partition of topics. A topic
// that does not exist is skipped (a note says so).
func List(ctx context.Context, adm *kadm.Client, topics ...string) (*Listing, error) {
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("metadata of %v: %w", topics, err)
	}
	l := &Listing{}
	set := kadm.TopicsSet{}
	for _, t := range topics {
		d, ok := md.Topics[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			l.Notes = append(l.Notes, fmt.Sprintf("topic %s does not exist", t))
			continue
		case d.Err != nil:
			return nil, fmt.Errorf("metadata of %s: %w", t, d.Err)
		}
		for p := range d.Partitions {
			set.Add(t, p)
			l.Partitions++
		}
	}
	return l, list(ctx, adm, set, l)
}

// ListPartition returns the transactions open on one partition.
func ListPartition(ctx context.Context, adm *kadm.Client, topic string, partition int32) (*Listing, error) {
	l := &Listing{Partitions: 1}
	set := kadm.TopicsSet{}
	set.Add(topic, partition)
	return l, list(ctx, adm, set, l)
}

func list(ctx context.Context, adm *kadm.Client, set kadm.TopicsSet, l *Listing) error {
	if len(set) == 0 {
		return nil
	}
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		return fmt.Errorf("describe producers: %w", err)
	}
	var errs []error
	described.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			errs = append(errs, fmt.Errorf("describe producers of %s/%d: %w %s", p.Topic, p.Partition, p.Err, p.ErrMessage))
			return
		}
		p.ActiveProducers.Each(func(d kadm.DescribedProducer) {
			if d.CurrentTxnStartOffset < 0 {
				return // an idempotent or transactional producer with no transaction open here
			}
			l.Open = append(l.Open, Open{
				Topic: d.Topic, Partition: d.Partition, Leader: d.Leader,
				ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch, CoordinatorEpoch: d.CoordinatorEpoch,
				StartOffset: d.CurrentTxnStartOffset, LastWrite: time.UnixMilli(d.LastTimestamp),
			})
		})
	})
	for t, ps := range set {
		for p := range ps {
			if _, ok := described[t].Partitions[p]; !ok {
				errs = append(errs, fmt.Errorf("describe producers of %s/%d: no broker answered for it", t, p))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	slices.SortFunc(l.Open, func(a, b Open) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.StartOffset, b.StartOffset))
	})
	if len(l.Open) == 0 {
		return nil
	}
	if err := offsets(ctx, adm, l.Open); err != nil {
		return err
	}
	l.Notes = append(l.Notes, coordinators(ctx, adm, l.Open)...)
	return nil
}

// offsets sets the LSO and HWM of each open transaction's partition.
func offsets(ctx context.Context, adm *kadm.Client, open []Open) error {
	var topics []string
	for _, o := range open {
		if !slices.Contains(topics, o.Topic) {
			topics = append(topics, o.Topic)
		}
	}
	lso, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list last stable offsets: %w", err)
	}
	hwm, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list high watermarks: %w", err)
	}
	for i := range open {
		o := &open[i]
		l, ok1 := lso.Lookup(o.Topic, o.Partition)
		h, ok2 := hwm.Lookup(o.Topic, o.Partition)
		if !ok1 || !ok2 || l.Err != nil || h.Err != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", o.Topic, o.Partition, cmp.Or(l.Err, h.Err, errors.New("not listed")))
		}
		o.LSO, o.HWM = l.Offset, h.Offset
	}
	return nil
}

// coordinators sets the transactional id, state, start and timeout of each
// open transaction the coordinators know the producer id of, and returns
// notes on what they could not say.
func coordinators(ctx context.Context, adm *kadm.Client, open []Open) []string {
	var pids []int64
	for _, o := range open {
		if !slices.Contains(pids, o.ProducerID) {
			pids = append(pids, o.ProducerID)
		}
	}
	var notes []string
	listed, err := adm.ListTransactions(ctx, pids, nil)
	if err != nil {
		notes = append(notes, fmt.Sprintf("list transactions (for the transactional ids): %v", err))
	}
	byPID := map[int64]string{}
	listed.Each(func(t kadm.ListedTransaction) {
		if slices.Contains(pids, t.ProducerID) {
			byPID[t.ProducerID] = t.TxnID
		}
	})
	if len(byPID) == 0 {
		return notes
	}
	ids := make([]string, 0, len(byPID))
	for _, id := range byPID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	described, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil {
		notes = append(notes, fmt.Sprintf("describe transactions %v: %v", ids, err))
	}
	for i := range open {
		o := &open[i]
		id, ok := byPID[o.ProducerID]
		if !ok {
			continue
		}
		o.TransactionalID = id
		d, ok := described[id]
		if !ok || d.Err != nil || d.ProducerID != o.ProducerID {
			continue // the id has moved on to another producer id since
		}
		o.State = d.State
		o.Timeout = time.Duration(d.TimeoutMillis) * time.Millisecond
		if d.StartTimestamp > 0 {
			o.Started = time.UnixMilli(d.StartTimestamp)
		}
	}
	return notes
}

// ErrNoOpenTransaction is returned by Holding when no transaction (or none
// of the producer id asked for) is open on the partition.
var ErrNoOpenTransaction = errors.New("no open transaction")

// Holding returns the transaction to abort on topic/partition: that of
// producerID, or, with producerID < 0, the one holding the partition's last
// stable offset (the oldest open there).
func Holding(ctx context.Context, adm *kadm.Client, topic string, partition int32, producerID int64) (Open, error) {
	l, err := ListPartition(ctx, adm, topic, partition)
	if err != nil {
		return Open{}, err
	}
	for _, o := range l.Open { // by start offset: the first holds the LSO
		if producerID < 0 || o.ProducerID == producerID {
			return o, nil
		}
	}
	if producerID >= 0 {
		return Open{}, fmt.Errorf("%w on %s/%d by producer id %d", ErrNoOpenTransaction, topic, partition, producerID)
	}
	return Open{}, fmt.Errorf("%w on %s/%d", ErrNoOpenTransaction, topic, partition)
}

// Result is what an abort did to the partition.
type Result struct {
	// Before and After are the partition's last stable offset before the
	// abort marker and after it; HWM its high watermark after (the marker
	// is one more record).
	Before, After, HWM int64
	// Remaining is what still holds the partition afterwards: the
	// transactions open there from the new LSO on (they started after the
	// one aborted).
	Remaining []Open
}

// Abort writes an abort marker for o's producer to o's partition, as
// kafka-transactions.sh abort does: with the producer id and epoch the
// partition leader described and its coordinator epoch (0 when the
// partition has seen none), so that the leader takes it as the end of the
// transaction and the last stable offset moves on. The records of the
// transaction on this partition are aborted: no read_committed reader ever
// sees them. Its other partitions are not touched.
//
// Abort only a transaction that is stuck: the producer, if it still
// lives, fails its next write or commit of that transaction.
func Abort(ctx context.Context, adm *kadm.Client, o Open) (Result, error) {
	set := kadm.TopicsSet{}
	set.Add(o.Topic, o.Partition)
	resps, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{
		ProducerID:       o.ProducerID,
		ProducerEpoch:    o.ProducerEpoch,
		Commit:           false,
		CoordinatorEpoch: max(o.CoordinatorEpoch, 0),
		Topics:           set,
	})
	if err != nil {
		return Result{}, fmt.Errorf("write the abort marker to %s/%d: %w", o.Topic, o.Partition, err)
	}
	var found bool
	resps.EachPartition(func(p kadm.TxnMarkersPartitionResponse) {
		if p.Topic == o.Topic && p.Partition == o.Partition && p.ProducerID == o.ProducerID {
			found, err = true, p.Err
		}
	})
	if !found {
		return Result{}, fmt.Errorf("write the abort marker to %s/%d: the broker did not answer for the partition", o.Topic, o.Partition)
	}
	if err != nil {
		return Result{}, fmt.Errorf("write the abort marker to %s/%d (producer id %d, epoch %d, coordinator epoch %d): %w",
			o.Topic, o.Partition, o.ProducerID, o.ProducerEpoch, max(o.CoordinatorEpoch, 0), err)
	}
	after, err := ListPartition(ctx, adm, o.Topic, o.Partition)
	if err != nil {
		return Result{}, fmt.Errorf("the abort marker is written; listing %s/%d after it: %w", o.Topic, o.Partition, err)
	}
	res := Result{Before: o.LSO}
	if err := partitionOffsets(ctx, adm, o.Topic, o.Partition, &res); err != nil {
		return res, fmt.Errorf("the abort marker is written; %w", err)
	}
	// The LSO is the proof: past the transaction's start, readers pass
	// it. (kfake's DescribeProducers goes on listing a producer whose
	// transaction only a marker ended: its coordinator still has it
	// open. Kafka's leader drops it.)
	for _, r := range after.Open {
		if r.StartOffset >= res.After {
			res.Remaining = append(res.Remaining, r)
		}
	}
	if res.After <= o.StartOffset {
		return res, fmt.Errorf("the abort marker is written, but the last stable offset of %s/%d is still %d, not past the transaction's start %d",
			o.Topic, o.Partition, res.After, o.StartOffset)
	}
	return res, nil
}

// partitionOffsets sets res's After and HWM.
func partitionOffsets(ctx context.Context, adm *kadm.Client, topic string, partition int32, res *Result) error {
	o := []Open{{Topic: topic, Partition: partition}}
	if err := offsets(ctx, adm, o); err != nil {
		return err
	}
	res.After, res.HWM = o[0].LSO, o[0].HWM
	return nil
}
