package pipeline

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// standbyProtocol is the group protocol name of standbyBalancer.
const standbyProtocol = "sponsor-standby"

// standbyBalancer is the group balancer of an instance with standby
// replicas (Config.StandbyReplicas): cooperative (KIP-429) and sticky like
// franz-go's cooperative-sticky balancer, and aware of where each
// partition's state already is.
//
// Every member publishes, in its join metadata's user data, the checkpoint
// (next changelog offset) its store holds for each partition of topic. The
// leader then assigns:
//
//   - a partition whose owner is still in the group stays with it (up to
//     the member's fair share, floor or ceiling of partitions/members);
//   - any other partition (its owner gone, or over its share) goes to the
//     member with the furthest checkpoint for it among those under their
//     share, ties to the member with fewer partitions, then to the first in
//     the group's order (instance id, then member id);
//   - replicas standbys per partition (at most members-1) on members other
//     than its owner, preferring members that already hold state for it,
//     then those with fewer standbys, then furthest checkpoint, then
//     group order. A member that still owns the partition in this
//     generation (it is being revoked) is never its standby.
//
// The standbys travel in each member's assignment user data;
// ParseSyncAssignment hands this member's to onStandbys. Balance's result
// is a deterministic function of the members' metadata.
type standbyBalancer struct {
	topic    string // the input topic the checkpoints and standbys are of
	replicas int    // standbys per partition
	// checkpoints returns the local store's checkpoint of each partition
	// it holds state of; called by the client when it joins.
	checkpoints func() map[int32]int64
	// onStandbys, if not nil, receives the standby partitions of this
	// member's every assignment, on the client's goroutine.
	onStandbys func([]int32)
}

func (s *standbyBalancer) ProtocolName() string { return standbyProtocol }
func (s *standbyBalancer) IsCooperative() bool  { return true }

func (s *standbyBalancer) JoinGroupMetadata(interests []string, current map[string][]int32, generation int32) []byte {
	var cps map[int32]int64
	if s.checkpoints != nil {
		cps = s.checkpoints()
	}
	return memberMetadata(interests, current, generation, cps)
}

// memberMetadata encodes a member's join metadata: its topics, the
// partitions it owns (cooperative), its generation, and its checkpoints in
// the user data.
func memberMetadata(interests []string, current map[string][]int32, generation int32, checkpoints map[int32]int64) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	for _, t := range slices.Sorted(maps.Keys(current)) {
		op := kmsg.NewConsumerMemberMetadataOwnedPartition()
		op.Topic = t
		op.Partitions = slices.Sorted(slices.Values(current[t]))
		meta.OwnedPartitions = append(meta.OwnedPartitions, op)
	}
	meta.UserData = encodeCheckpoints(checkpoints)
	return meta.AppendTo(nil)
}

func (s *standbyBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(assignment); err != nil {
		return nil, fmt.Errorf("parse sync assignment: %w", err)
	}
	standbys, err := decodePartitions(a.UserData)
	if err != nil {
		return nil, fmt.Errorf("parse standbys of the sync assignment: %w", err)
	}
	m := make(map[string][]int32, len(a.Topics))
	for _, t := range a.Topics {
		m[t.Topic] = t.Partitions
	}
	if s.onStandbys != nil {
		s.onStandbys(standbys)
	}
	return m, nil
}

func (s *standbyBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(s, members)
	return b, b.MemberTopics(), err
}

// groupMember is what Balance knows of one member.
type groupMember struct {
	id          string
	topics      map[string]bool
	owned       map[string][]int32 // claims that are current (KIP-792)
	claims      map[string][]int32 // every claim, current or stale
	checkpoints map[int32]int64
}

// Balance implements kgo.ConsumerBalancerBalance.
func (s *standbyBalancer) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	var members []groupMember
	// The highest generation claiming each partition: an older claim is
	// stale (the member missed rebalances) and does not count as owning.
	maxGen := map[string]map[int32]int32{}
	b.EachMember(func(_ *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		for _, op := range meta.OwnedPartitions {
			if maxGen[op.Topic] == nil {
				maxGen[op.Topic] = map[int32]int32{}
			}
			for _, p := range op.Partitions {
				if g, ok := maxGen[op.Topic][p]; !ok || meta.Generation > g {
					maxGen[op.Topic][p] = meta.Generation
				}
			}
		}
	})
	b.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		gm := groupMember{id: m.MemberID, topics: map[string]bool{}, owned: map[string][]int32{}, claims: map[string][]int32{}}
		for _, t := range meta.Topics {
			gm.topics[t] = true
		}
		for _, op := range meta.OwnedPartitions {
			for _, p := range op.Partitions {
				gm.claims[op.Topic] = append(gm.claims[op.Topic], p)
				if meta.Generation >= maxGen[op.Topic][p] {
					gm.owned[op.Topic] = append(gm.owned[op.Topic], p)
				}
			}
		}
		// Bad user data (another client, a newer version) only loses the
		// preference: the member is balanced as one without state.
		gm.checkpoints, _ = decodeCheckpoints(meta.UserData)
		members = append(members, gm)
	})
	plan := b.NewPlan()
	owners := balance(members, topics)
	ids := plan.AsMemberIDMap()
	for t, ps := range owners {
		for p, i := range ps {
			if i >= 0 {
				ids[members[i].id][t] = append(ids[members[i].id][t], int32(p))
			}
		}
	}
	standbys := map[string][]int32{}
	for i, ps := range placeStandbys(members, s.topic, owners[s.topic], s.replicas) {
		standbys[members[i].id] = ps
	}
	plan.AdjustCooperative(b)
	return &standbyPlan{plan: plan, standbys: standbys}
}

// balance returns, per topic of topics, the index in members of each
// partition's owner (-1 when no member consumes the topic).
func balance(members []groupMember, topics map[string]int32) map[string][]int {
	out := map[string][]int{}
	for _, t := range slices.Sorted(maps.Keys(topics)) {
		n := int(topics[t])
		owner := make([]int, n)
		for p := range owner {
			owner[p] = -1
		}
		out[t] = owner
		var subs []int // the members consuming t, in group order
		for i, m := range members {
			if m.topics[t] {
				subs = append(subs, i)
			}
		}
		if len(subs) == 0 || n == 0 {
			continue
		}
		floor, extra := n/len(subs), n%len(subs) // extra members may have floor+1
		count := map[int]int{}
		// Owners keep theirs, those owning most first, so that the
		// members over the floor are the ones that were.
		keepers := slices.Clone(subs)
		slices.SortStableFunc(keepers, func(a, b int) int { return cmp.Compare(len(members[b].owned[t]), len(members[a].owned[t])) })
		for _, i := range keepers {
			share := floor
			owned := slices.Sorted(slices.Values(members[i].owned[t]))
			if len(owned) > floor && extra > 0 {
				share++
				extra--
			}
			for _, p := range owned {
				if count[i] == share {
					break
				}
				if int(p) < n && owner[p] < 0 {
					owner[p] = i
					count[i]++
				}
			}
		}
		// Every other partition: to the furthest checkpoint among the
		// members with room.
		for p := range owner {
			if owner[p] >= 0 {
				continue
			}
			best := -1
			for _, i := range subs {
				if count[i] > floor || count[i] == floor && extra == 0 {
					continue // at its share
				}
				if best < 0 || better(members[i], members[best], int32(p), count[i], count[best]) {
					best = i
				}
			}
			if best < 0 {
				continue // cannot be: the shares add up to n
			}
			owner[p] = best
			if count[best] == floor {
				extra-- // best takes one of the shares above the floor
			}
			count[best]++
		}
	}
	return out
}

// better reports whether member a is a better owner of partition p than b
// (whose partitions so far are na and nb): the furthest checkpoint, then
// fewer partitions; equal ones keep b, the earlier in group order.
func better(a, b groupMember, p int32, na, nb int) bool {
	ca, cb := checkpointOf(a, p), checkpointOf(b, p)
	if ca != cb {
		return ca > cb
	}
	return na < nb
}

// checkpointOf returns m's checkpoint of p, -1 when it has none.
func checkpointOf(m groupMember, p int32) int64 {
	if c, ok := m.checkpoints[p]; ok {
		return c
	}
	return -1
}

// placeStandbys returns, per member index, the partitions of topic it
// follows as a standby: replicas per partition (capped at the members
// consuming topic, less the owner), never on the partition's planned owner
// nor on a member still claiming it.
func placeStandbys(members []groupMember, topic string, owners []int, replicas int) map[int][]int32 {
	out := map[int][]int32{}
	if replicas <= 0 {
		return out
	}
	claimed := map[int32]map[int]bool{}
	var subs []int
	for i, m := range members {
		if !m.topics[topic] {
			continue
		}
		subs = append(subs, i)
		for _, p := range m.claims[topic] {
			if claimed[p] == nil {
				claimed[p] = map[int]bool{}
			}
			claimed[p][i] = true
		}
	}
	count := map[int]int{}
	for p, o := range owners {
		var cands []int
		for _, i := range subs {
			if i != o && !claimed[int32(p)][i] {
				cands = append(cands, i)
			}
		}
		slices.SortStableFunc(cands, func(a, b int) int {
			ca, cb := checkpointOf(members[a], int32(p)), checkpointOf(members[b], int32(p))
			if ha, hb := ca >= 0, cb >= 0; ha != hb {
				if ha {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(count[a], count[b]); c != 0 {
				return c
			}
			return cmp.Compare(cb, ca)
		})
		for _, i := range cands[:min(replicas, len(cands))] {
			out[i] = append(out[i], int32(p))
			count[i]++
		}
	}
	return out
}

// standbyPlan is a balance plan with each member's standbys in its
// assignment's user data.
type standbyPlan struct {
	plan     *kgo.BalancePlan
	standbys map[string][]int32 // by member id
}

// IntoSyncAssignment implements kgo.IntoSyncAssignment.
func (sp *standbyPlan) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment {
	as := sp.plan.IntoSyncAssignment()
	for k := range as {
		ps := sp.standbys[as[k].MemberID]
		if len(ps) == 0 {
			continue
		}
		var a kmsg.ConsumerMemberAssignment
		if err := a.ReadFrom(as[k].MemberAssignment); err != nil {
			continue // the plan's own encoding: cannot fail
		}
		a.UserData = encodePartitions(ps)
		as[k].MemberAssignment = a.AppendTo(nil)
	}
	return as
}

// encodeCheckpoints encodes the checkpoints of a member's join metadata:
// version 0, the number of partitions, then each partition and its
// checkpoint, in partition order, as varints.
func encodeCheckpoints(cps map[int32]int64) []byte {
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(len(cps)))
	for _, p := range slices.Sorted(maps.Keys(cps)) {
		b = binary.AppendVarint(b, int64(p))
		b = binary.AppendVarint(b, cps[p])
	}
	return b
}

var errStandbyData = errors.New("malformed standby user data")

// userDataHeader reads the version (0) and the count of entries that
// begin the standby user data b, and returns the count and the rest.
func userDataHeader(b []byte) (uint64, []byte, error) {
	if b[0] != 0 {
		return 0, nil, fmt.Errorf("%w: version %d", errStandbyData, b[0])
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)) {
		return 0, nil, errStandbyData
	}
	return n, b[1+k:], nil
}

func decodeCheckpoints(b []byte) (map[int32]int64, error) {
	if len(b) == 0 {
		return nil, nil
	}
	n, b, err := userDataHeader(b)
	if err != nil {
		return nil, err
	}
	cps := make(map[int32]int64, n)
	for range n {
		p, k := binary.Varint(b)
		if k <= 0 {
			return nil, errStandbyData
		}
		b = b[k:]
		c, k := binary.Varint(b)
		if k <= 0 {
			return nil, errStandbyData
		}
		b = b[k:]
		cps[int32(p)] = c
	}
	return cps, nil
}

// encodePartitions encodes a member's standby partitions in its
// assignment's user data: version 0, the count, the partitions as varints.
func encodePartitions(ps []int32) []byte {
	b := []byte{0}
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = binary.AppendVarint(b, int64(p))
	}
	return b
}

func decodePartitions(b []byte) ([]int32, error) {
	if len(b) == 0 {
		return nil, nil
	}
	n, b, err := userDataHeader(b)
	if err != nil {
		return nil, err
	}
	ps := make([]int32, 0, n)
	for range n {
		p, k := binary.Varint(b)
		if k <= 0 {
			return nil, errStandbyData
		}
		b = b[k:]
		ps = append(ps, int32(p))
	}
	return ps, nil
}
