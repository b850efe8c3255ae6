package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sponsored/sponsor/state"
)

// TestRestorePartitions: RestorePartitions runs at most Parallelism
// restores at once, returns one result per partition in the order asked
// for, lets a partition fail without failing the others, and calls Ended
// for every partition, with how long reading the changelog took (0 when
// it was skipped).
func TestRestorePartitions(t *testing.T) {
	opts, _, adm := testCluster(t, 4, "changelog")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := state.Open(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	for _, skip := range []bool{false, true} {
		var (
			mu            sync.Mutex
			running, most int
			loaded        []int32
			ended         = map[int32]time.Duration{}
		)
		failed := errors.New("load failed")
		ps := []int32{3, 0, 2, 1}
		res := RestorePartitions(ctx, adm, store, "changelog", ps, RestoreOptions{
			Kafka:         opts,
			Parallelism:   2,
			SkipChangelog: skip,
			Loaded: func(p int32) error {
				mu.Lock()
				running++
				most = max(most, running)
				loaded = append(loaded, p)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond) // overlap with the other restores, if more than 2 ran at once
				mu.Lock()
				running--
				mu.Unlock()
				if p == 2 {
					return failed
				}
				return nil
			},
			Ended: func(p int32, restored time.Duration) {
				mu.Lock()
				ended[p] = restored
				mu.Unlock()
			},
		})
		if len(res) != len(ps) {
			t.Fatalf("skip %v: %d results for %d partitions", skip, len(res), len(ps))
		}
		for i, r := range res {
			if r.Partition != ps[i] {
				t.Errorf("skip %v: result %d is partition %d, want %d (the order asked for)", skip, i, r.Partition, ps[i])
			}
			switch {
			case r.Partition == 2 && !errors.Is(r.Err, failed):
				t.Errorf("skip %v: partition 2: err %v, want Loaded's", skip, r.Err)
			case r.Partition != 2 && r.Err != nil:
				t.Errorf("skip %v: partition %d: err %v, want none (another partition's failure is its own)", skip, r.Partition, r.Err)
			case r.Records != 0 || r.From != r.End:
				t.Errorf("skip %v: partition %d: %d records from %d to %d, want none of an empty changelog", skip, r.Partition, r.Records, r.From, r.End)
			}
		}
		if most < 1 || most > 2 {
			t.Errorf("skip %v: %d restores at once, want at most Parallelism 2", skip, most)
		}
		if len(loaded) != len(ps) {
			t.Errorf("skip %v: Loaded for %v, want every partition of %v", skip, loaded, ps)
		}
		for _, p := range ps {
			d, ok := ended[p]
			switch {
			case !ok:
				t.Errorf("skip %v: no Ended for partition %d", skip, p)
			case skip && d != 0:
				t.Errorf("skip %v: partition %d: restored in %s, want 0 (changelog skipped)", skip, p, d)
			case !skip && d <= 0:
				t.Errorf("skip %v: partition %d: restored in %s, want the time the read took", skip, p, d)
			}
		}
	}
}

// TestCheckpointUsable: a checkpoint resumes a restore only within the
// offsets the changelog partition holds.
func TestCheckpointUsable(t *testing.T) {
	for _, tc := range []struct {
		cp, start, end int64
		want           bool
	}{
		{5, 0, 10, true},
		{0, 0, 10, true},
		{10, 0, 10, true},
		{0, 0, 0, true},
		{2, 3, 10, false},  // truncated past the checkpoint
		{11, 0, 10, false}, // a changelog younger than the state
	} {
		if got := checkpointUsable(tc.cp, tc.start, tc.end); got != tc.want {
			t.Errorf("checkpointUsable(%d, %d, %d) = %v, want %v", tc.cp, tc.start, tc.end, got, tc.want)
		}
	}
}
