package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fenceWait bounds the fencing of dead members' transactions in one
// assignment: past it the instance goes on and waits for their transaction
// timeout, as it would without fencing.
const fenceWait = 10 * time.Second

// fenceDead aborts the open transactions of this group's instances that are
// no longer members of the group and hold one of the assigned partitions
// (their changelog or inbox partition, or the group's offsets), so that the
// restore and the stable offset fetch of the new owner do not wait for the
// broker's transaction timeout (issue 15).
//
// A transaction is fenced by initialising a producer with its transactional
// id: the coordinator bumps the epoch and aborts the open transaction,
// writing abort markers on all its partitions; a zombie of the dead
// instance then gets PRODUCER_FENCED. A live member's id is never fenced
// (that would abort a healthy transaction), nor this instance's own.
//
// Only static members can be told apart: a dynamic member's transactional
// id is not visible in the group description, so when a member without an
// instance id is in the group nothing is fenced (see Config.NoFence). Any
// error is logged and the assignment goes on: fencing only shortens a wait.
func (h *handover) fenceDead(ctx context.Context, assigned []int32) {
	if h.cfg.NoFence || h.cfg.UnsafeNoTransactions || len(assigned) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, fenceWait)
	defer cancel()
	run := h.cfg.Run()
	group := run.ConsumerGroup()
	prefix := run.TransactionalID("")
	listed, err := h.adm.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil && len(listed) == 0 {
		h.log.Warn("fence: could not list open transactions; a dead instance's transaction may hold the partitions until its timeout", "err", err)
		return
	}
	var ids []string
	listed.Each(func(t kadm.ListedTransaction) {
		if strings.HasPrefix(t.TxnID, prefix) && t.TxnID != h.txnID {
			ids = append(ids, t.TxnID)
		}
	})
	if len(ids) == 0 {
		return
	}
	live, ok := h.liveTxnIDs(ctx, group)
	if !ok {
		return
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return live[id] })
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	described, err := h.adm.DescribeTransactions(ctx, ids...)
	if err != nil && len(described) == 0 {
		h.log.Warn("fence: could not describe open transactions", "ids", ids, "err", err)
		return
	}
	for _, id := range ids {
		d, found := described[id]
		if !found || d.Err != nil || d.State != "Ongoing" {
			continue
		}
		held := h.heldPartitions(d.Topics, assigned)
		if len(held) == 0 {
			continue
		}
		start := time.Now()
		if err := h.fence(ctx, id); err != nil {
			h.log.Warn("fence: could not fence a dead instance's transaction; the partitions wait for its timeout", "transactional_id", id, "partitions", held, "err", err)
			continue
		}
		h.stats.FencedTransactions.Add(1)
		h.log.Info("fenced the open transaction of an instance no longer in the group", "transactional_id", id,
			"partitions", held, "open_for", time.Since(time.UnixMilli(d.StartTimestamp)).Round(time.Millisecond),
			"producer_id", d.ProducerID, "producer_epoch", d.ProducerEpoch, "took", time.Since(start).Round(time.Millisecond))
	}
}

// liveTxnIDs returns the transactional ids of the group's live members, and
// false if they cannot be known (the group cannot be described, or it has
// a dynamic member, whose transactional id is not in the description).
func (h *handover) liveTxnIDs(ctx context.Context, group string) (map[string]bool, bool) {
	groups, err := h.adm.DescribeGroups(ctx, group)
	if err == nil {
		err = groups.Error()
	}
	if err != nil {
		h.log.Warn("fence: could not describe the group; nothing fenced", "group", group, "err", err)
		return nil, false
	}
	live := map[string]bool{h.txnID: true}
	for _, m := range groups[group].Members {
		if m.InstanceID == nil {
			h.log.Info("fence: the group has a dynamic member; its transactional id is unknown, nothing fenced", "member_id", m.MemberID, "client_id", m.ClientID)
			return nil, false
		}
		live[h.cfg.Run().TransactionalID(*m.InstanceID)] = true
	}
	return live, true
}

// heldPartitions returns, described as "topic/partition", the partitions
// of an open transaction that the assignment needs: the changelog and inbox
// partitions of the assigned tasks, and any offsets partition (the
// transaction then holds offsets of the group, which the stable offset
// fetch waits for).
func (h *handover) heldPartitions(held kadm.TopicsSet, assigned []int32) []string {
	var out []string
	held.Each(func(t string, p int32) {
		switch {
		case t == "__consumer_offsets",
			(t == h.names.Changelog || t == h.names.Inbox) && slices.Contains(assigned, p):
			out = append(out, fmt.Sprintf("%s/%d", t, p))
		}
	})
	slices.Sort(out)
	return out
}

// fence initialises a producer with the transactional id, which bumps its
// epoch and makes the coordinator abort its open transaction.
func (h *handover) fence(ctx context.Context, txnID string) error {
	cl, err := kgo.NewClient(append(slices.Clone(h.base),
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(h.cfg.TransactionTimeout),
	)...)
	if err != nil {
		return fmt.Errorf("fencing client for %s: %w", txnID, err)
	}
	defer cl.Close()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("initialize producer %s: %w", txnID, err)
	}
	return nil
}
