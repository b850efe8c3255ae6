package pipeline

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// session is what the loop needs of its Kafka client: a
// *kgo.GroupTransactSession, or, only for the negative-control tests, a
// plain at-least-once client (Config.UnsafeNoTransactions).
type session interface {
	PollRecords(ctx context.Context, maxPollRecords int) kgo.Fetches
	AllowRebalance()
	Client() *kgo.Client
	Begin() error
	End(ctx context.Context, commit kgo.TransactionEndTry) (bool, error)
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Close()
}

// plainSession has no transactions: records are produced and flushed, and
// offsets are auto-committed on their own schedule. A crash can then lose
// or repeat outputs: it exists to prove the crash tests can see that.
type plainSession struct{ cl *kgo.Client }

func (s plainSession) PollRecords(ctx context.Context, n int) kgo.Fetches {
	return s.cl.PollRecords(ctx, n)
}
func (s plainSession) AllowRebalance()     { s.cl.AllowRebalance() }
func (s plainSession) Client() *kgo.Client { return s.cl }
func (s plainSession) Begin() error        { return nil }
func (s plainSession) Close()              { s.cl.Close() }
func (s plainSession) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	s.cl.Produce(ctx, r, promise)
}
func (s plainSession) End(ctx context.Context, commit kgo.TransactionEndTry) (bool, error) {
	if err := s.cl.Flush(ctx); err != nil {
		return false, err
	}
	return bool(commit), nil
}
