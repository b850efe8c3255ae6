// Package replay plans and applies a reset of a consumer group's offsets on
// the interactions topic: to the start, to a time, or back by a duration.
//
// On the pipeline's own group a replay re-reads, it never re-decides: every
// transaction commits each task's next offset together with its state, so
// on restart a task skips the records its state already reflects, and every
// campaign it fired stays fired. Nothing is sent twice. To re-decide past
// data (other rules, a fixed bug, a new version), replay into a shadow run
// (topics.Run, pipeline.Config.Shadow): its own group, state and
// output topics, compared with the real inbox by `sponsor diff`.
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Target is where to move the offsets: the start of each partition, or the
// first record written at or after Time (the record timestamp, the time it
// was produced; "back by D" is Time = now - D).
type Target struct {
	Start bool
	Time  time.Time
}

func (t Target) String() string {
	if t.Start {
		return "the start"
	}
	return "the first record written at or after " + t.Time.UTC().Format(time.RFC3339)
}

// PartitionPlan is the move of one partition.
type PartitionPlan struct {
	Partition int32
	// Committed is the group's committed offset now; -1 if none.
	Committed int64
	// Target is the offset the group will have: never ahead of Committed
	// (a replay does not skip records).
	Target int64
	// End is the partition's last stable offset now.
	End int64
}

// Reread is how many records the group will read again (or for the first
// time, for a group with no offset).
func (p PartitionPlan) Reread() int64 {
	from := p.Committed
	if from < 0 {
		from = p.End
	}
	return max(0, from-p.Target)
}

// Plan is a replay, computed by [MakePlan] and carried out by [Apply].
type Plan struct {
	Group      string
	Topic      string
	Target     Target
	Partitions []PartitionPlan
	// GroupState is the group's state ("Empty", "Dead" for a group that
	// never committed, "Stable" while instances run...).
	GroupState string
	// Members lists the group's members now: a replay is refused unless
	// there are none.
	Members []string
}

// Reread is the total of the partitions' [PartitionPlan.Reread].
func (p *Plan) Reread() int64 {
	var n int64
	for _, pp := range p.Partitions {
		n += pp.Reread()
	}
	return n
}

// Running reports whether instances are in the group.
func (p *Plan) Running() bool { return len(p.Members) > 0 }

// MakePlan reads the group's committed offsets on topic and the offsets of
// target, and says what a replay would do. It changes nothing.
func MakePlan(ctx context.Context, adm *kadm.Client, group, topic string, target Target) (*Plan, error) {
	if !target.Start && target.Time.IsZero() {
		return nil, errors.New("no target (the start, or a time)")
	}
	plan := &Plan{Group: group, Topic: topic, Target: target}
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	if g, ok := gs[group]; ok {
		if g.Err != nil && !strings.Contains(g.Err.Error(), "GROUP_ID_NOT_FOUND") {
			return nil, fmt.Errorf("describe group %s: %w", group, g.Err)
		}
		plan.GroupState = g.State
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID + " (" + m.MemberID + ")"
			}
			plan.Members = append(plan.Members, id+" on "+m.ClientHost)
		}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		// A group that never committed (a new shadow run).
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	var targets kadm.ListedOffsets
	if target.Start {
		targets, err = adm.ListStartOffsets(ctx, topic)
	} else {
		targets, err = adm.ListOffsetsAfterMilli(ctx, target.Time.UnixMilli(), topic)
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s at %s: %w", topic, target, err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		pp := PartitionPlan{Partition: e.Partition, Committed: -1, End: e.Offset}
		if o, ok := committed.Lookup(topic, e.Partition); ok && o.Err == nil && o.At >= 0 {
			pp.Committed = o.At
		}
		pp.Target = e.Offset
		if t, ok := targets.Lookup(topic, e.Partition); ok && t.Err == nil && t.Offset >= 0 {
			pp.Target = min(t.Offset, e.Offset)
		}
		if pp.Committed >= 0 {
			pp.Target = min(pp.Target, pp.Committed)
		}
		plan.Partitions = append(plan.Partitions, pp)
	})
	slices.SortFunc(plan.Partitions, func(a, b PartitionPlan) int { return int(a.Partition - b.Partition) })
	return plan, nil
}

// ErrRunning is returned by [Apply] when instances are in the group.
var ErrRunning = errors.New("instances of the group are running")

// Apply commits the plan's target offsets for its group, after checking
// again that the group has no member: offsets committed under running
// instances would be overwritten by their next transaction, or worse, mix
// with it.
func Apply(ctx context.Context, adm *kadm.Client, plan *Plan) error {
	gs, err := adm.DescribeGroups(ctx, plan.Group)
	if err != nil {
		return fmt.Errorf("describe group %s: %w", plan.Group, err)
	}
	if g, ok := gs[plan.Group]; ok && len(g.Members) > 0 {
		return fmt.Errorf("%w: %d member(s) in group %s; stop every instance (SIGTERM) and run the replay again", ErrRunning, len(g.Members), plan.Group)
	}
	os := kadm.Offsets{}
	for _, pp := range plan.Partitions {
		os.AddOffset(plan.Topic, pp.Partition, pp.Target, -1)
	}
	resp, err := adm.CommitOffsets(ctx, plan.Group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", plan.Group, err)
	}
	return nil
}
