package pipeline

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testMember is one member's join metadata in a balancer test.
type testMember struct {
	id          string
	owned       []int32 // of topic "in"
	generation  int32
	checkpoints map[int32]int64
}

// balanced is what one member got: its partitions and its standbys.
type balanced struct {
	active, standby []int32
}

func (b balanced) String() string { return fmt.Sprintf("active %v standby %v", b.active, b.standby) }

// runBalance balances topic "in" of n partitions over ms, as a group
// leader would, and returns what each member got, by id, and the encoded
// assignment.
func runBalance(t *testing.T, n int32, replicas int, ms []testMember) (map[string]balanced, []kmsg.SyncGroupRequestGroupAssignment) {
	t.Helper()
	var members []kmsg.JoinGroupResponseMember
	for _, m := range ms {
		var cur map[string][]int32
		if len(m.owned) > 0 {
			cur = map[string][]int32{"in": m.owned}
		}
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		id := m.id
		jm.InstanceID = &id
		jm.ProtocolMetadata = memberMetadata([]string{"in"}, cur, m.generation, m.checkpoints)
		members = append(members, jm)
	}
	var got []int32
	s := &standbyBalancer{topic: "in", replicas: replicas, onStandbys: func(ps []int32) { got = ps }}
	mb, topics, err := s.MemberBalancer(members)
	if err != nil {
		t.Fatalf("MemberBalancer: %v", err)
	}
	if _, ok := topics["in"]; !ok {
		t.Fatalf("MemberBalancer's topics = %v, want in", topics)
	}
	ia, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(map[string]int32{"in": n})
	if err != nil {
		t.Fatalf("Balance: %v", err)
	}
	as := ia.IntoSyncAssignment()
	out := map[string]balanced{}
	for _, a := range as {
		got = nil
		m, err := s.ParseSyncAssignment(a.MemberAssignment)
		if err != nil {
			t.Fatalf("ParseSyncAssignment of %s: %v", a.MemberID, err)
		}
		out[a.MemberID] = balanced{active: slices.Sorted(slices.Values(m["in"])), standby: got}
	}
	return out, as
}

func describe(m map[string]balanced) string {
	var sb strings.Builder
	for _, id := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&sb, "%s: %s; ", id, m[id])
	}
	return sb.String()
}

func TestStandbyBalancer(t *testing.T) {
	cp := func(ps ...int64) map[int32]int64 { // partition, checkpoint pairs
		m := map[int32]int64{}
		for i := 0; i+1 < len(ps); i += 2 {
			m[int32(ps[i])] = ps[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		n        int32
		replicas int
		members  []testMember
		want     map[string]balanced
	}{{
		name: "owners keep theirs, standbys on the others",
		n:    6, replicas: 1,
		members: []testMember{
			{id: "a", owned: []int32{0, 1}, generation: 3, checkpoints: cp(0, 100, 1, 100, 2, 90, 3, 90)},
			{id: "b", owned: []int32{2, 3}, generation: 3, checkpoints: cp(2, 100, 3, 100, 4, 90, 5, 90)},
			{id: "c", owned: []int32{4, 5}, generation: 3, checkpoints: cp(4, 100, 5, 100, 0, 90, 1, 90)},
		},
		want: map[string]balanced{
			"a": {active: []int32{0, 1}, standby: []int32{2, 3}},
			"b": {active: []int32{2, 3}, standby: []int32{4, 5}},
			"c": {active: []int32{4, 5}, standby: []int32{0, 1}},
		},
	}, {
		name: "an owner gone: its partitions go to their standbys, as far as the shares allow",
		n:    6, replicas: 1,
		members: []testMember{ // b is gone: c held 2 and 3, a 4 and 5
			{id: "a", owned: []int32{0, 1}, generation: 3, checkpoints: cp(0, 100, 1, 100, 4, 90, 5, 90)},
			{id: "c", owned: []int32{4, 5}, generation: 3, checkpoints: cp(4, 100, 5, 100, 2, 90, 3, 90)},
		},
		want: map[string]balanced{
			// c follows 2 and 3 but has room for one: 2 to c, 3 to a.
			"a": {active: []int32{0, 1, 3}, standby: []int32{2, 4, 5}},
			"c": {active: []int32{2, 4, 5}, standby: []int32{0, 1, 3}},
		},
	}, {
		name: "an orphan goes to the furthest checkpoint",
		n:    4, replicas: 0,
		members: []testMember{
			{id: "a", checkpoints: cp(0, 5, 1, 50, 2, 7)},
			{id: "b", checkpoints: cp(0, 9, 1, 10, 3, 1)},
		},
		want: map[string]balanced{
			"a": {active: []int32{1, 2}},
			"b": {active: []int32{0, 3}},
		},
	}, {
		name: "standbys capped at members-1, never on the owner",
		n:    3, replicas: 5,
		members: []testMember{
			{id: "a", owned: []int32{0, 1}, generation: 1},
			{id: "b", owned: []int32{2}, generation: 1},
		},
		want: map[string]balanced{
			"a": {active: []int32{0, 1}, standby: []int32{2}},
			"b": {active: []int32{2}, standby: []int32{0, 1}},
		},
	}, {
		name: "a member joins: the owner keeps its share, what moves waits for the revoke (cooperative)",
		n:    4, replicas: 1,
		members: []testMember{
			{id: "a", owned: []int32{0, 1, 2, 3}, generation: 2, checkpoints: cp(0, 10, 1, 10, 2, 10, 3, 10)},
			{id: "b"},
		},
		want: map[string]balanced{
			"a": {active: []int32{0, 1}},
			"b": {standby: []int32{0, 1}},
		},
	}, {
		name: "after the revoke, the joined member takes them and the old owner follows them",
		n:    4, replicas: 1,
		members: []testMember{
			{id: "a", owned: []int32{0, 1}, generation: 3, checkpoints: cp(0, 10, 1, 10, 2, 10, 3, 10)},
			{id: "b", generation: 3},
		},
		want: map[string]balanced{
			"a": {active: []int32{0, 1}, standby: []int32{2, 3}},
			"b": {active: []int32{2, 3}, standby: []int32{0, 1}},
		},
	}, {
		name: "a stale claim does not keep a partition (KIP-792)",
		n:    2, replicas: 1,
		members: []testMember{
			{id: "a", owned: []int32{0, 1}, generation: 1},
			{id: "b", owned: []int32{1}, generation: 4},
		},
		want: map[string]balanced{
			// a still claims 1: no standby of 1 on it until it revoked.
			"a": {active: []int32{0}},
			"b": {active: []int32{1}, standby: []int32{0}},
		},
	}, {
		name: "one member: everything, no standby",
		n:    3, replicas: 1,
		members: []testMember{{id: "a", owned: []int32{1}, generation: 2}},
		want: map[string]balanced{
			"a": {active: []int32{0, 1, 2}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, as := runBalance(t, tc.n, tc.replicas, tc.members)
			if describe(got) != describe(tc.want) {
				t.Fatalf("assignment:\n got %s\nwant %s", describe(got), describe(tc.want))
			}
			for id, b := range got {
				for _, p := range b.standby {
					if slices.Contains(b.active, p) {
						t.Errorf("%s is owner and standby of partition %d", id, p)
					}
				}
			}
			// Deterministic: the same metadata gives the same bytes.
			_, again := runBalance(t, tc.n, tc.replicas, tc.members)
			if len(again) != len(as) {
				t.Fatalf("second balance: %d assignments, first %d", len(again), len(as))
			}
			for i := range as {
				if as[i].MemberID != again[i].MemberID || !bytes.Equal(as[i].MemberAssignment, again[i].MemberAssignment) {
					t.Fatalf("second balance differs for member %s", as[i].MemberID)
				}
			}
		})
	}
}

// TestStandbyBalancerEveryPartitionOnce checks, over group sizes and
// standby counts, that each partition has exactly one owner once no
// revoke is pending, and min(replicas, members-1) standbys, none on it.
func TestStandbyBalancerEveryPartitionOnce(t *testing.T) {
	for members := 1; members <= 5; members++ {
		for replicas := 0; replicas <= 3; replicas++ {
			var ms []testMember
			for i := range members {
				ms = append(ms, testMember{id: fmt.Sprintf("m%d", i), generation: 1})
			}
			got, _ := runBalance(t, 12, replicas, ms)
			owners := map[int32]int{}
			standbys := map[int32]int{}
			for _, b := range got {
				for _, p := range b.active {
					owners[p]++
				}
				for _, p := range b.standby {
					standbys[p]++
				}
				if n := len(b.active); n < 12/members || n > (12+members-1)/members {
					t.Errorf("%d members, %d replicas: a member got %d partitions", members, replicas, n)
				}
			}
			for p := range int32(12) {
				if owners[p] != 1 {
					t.Errorf("%d members, %d replicas: partition %d has %d owners", members, replicas, p, owners[p])
				}
				if want := min(replicas, members-1); standbys[p] != want {
					t.Errorf("%d members, %d replicas: partition %d has %d standbys, want %d", members, replicas, p, standbys[p], want)
				}
			}
		}
	}
}

func TestStandbyUserData(t *testing.T) {
	cps := map[int32]int64{0: 0, 3: 1 << 40, 7: -1}
	got, err := decodeCheckpoints(encodeCheckpoints(cps))
	if err != nil || !maps.Equal(got, cps) {
		t.Fatalf("checkpoints round trip: %v, %v; want %v", got, err, cps)
	}
	ps := []int32{5, 1, 9}
	gotPs, err := decodePartitions(encodePartitions(ps))
	if err != nil || !slices.Equal(gotPs, ps) {
		t.Fatalf("partitions round trip: %v, %v; want %v", gotPs, err, ps)
	}
	for _, bad := range [][]byte{{1}, {0, 5}, {0, 1}, {0, 1, 2}} {
		if _, err := decodeCheckpoints(bad); err == nil {
			t.Errorf("decodeCheckpoints(%x): no error", bad)
		}
	}
	if _, err := decodePartitions([]byte{0, 2, 1}); err == nil {
		t.Error("decodePartitions of a short list: no error")
	}
}
