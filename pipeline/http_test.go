package pipeline

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// TestStateUserOwned: /state/user says, for each partition of the store
// that knows the user, whether the instance owns it now: a store keeps a
// stale copy of a partition that moved to another instance, and an SRE must
// not take it for the truth.
func TestStateUserOwned(t *testing.T) {
	store, err := state.Open(filepath.Join(t.TempDir(), "pebble"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := policy.Contact{}
	c.Apply(schemas.UserMessage, policy.Millis(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixMilli()))
	for _, p := range []int32{1, 3} { // 3: a copy left from before a rebalance
		b := store.NewBatch(p)
		if err := b.PutContact("u1", "biz-a", &c, false); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(10); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	r := &Runner{}
	r.view.set(store)
	srv := httptest.NewServer(r.Handler(prometheus.NewRegistry()))
	defer srv.Close()

	get := func() map[int32]*bool {
		t.Helper()
		resp, err := http.Get(srv.URL + "/state/user?user=u1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v state.UserView
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /state/user: %s, %v", resp.Status, err)
		}
		got := map[int32]*bool{}
		for _, pv := range v.Partitions {
			got[pv.Partition] = pv.Owned
		}
		return got
	}
	check := func(what string, want map[int32]bool) {
		t.Helper()
		got := get()
		if len(got) != len(want) {
			t.Fatalf("%s: partitions %v, want %v", what, got, want)
		}
		for p, w := range want {
			if got[p] == nil || *got[p] != w {
				t.Errorf("%s: partition %d owned = %v, want %v", what, p, got[p], w)
			}
		}
	}
	check("no task owned (not joined yet)", map[int32]bool{1: false, 3: false})
	r.owned.Store(&[]int32{0, 1, 2})
	check("partition 1 owned, 3 moved away", map[int32]bool{1: true, 3: false})
	r.owned.Store(&[]int32{3})
	check("partition 3 owned", map[int32]bool{1: false, 3: true})

	// One scan of whole partitions at a time: while one runs, another is
	// refused, and a view of one business, a point read, is not.
	status := func(query string) int {
		t.Helper()
		resp, err := http.Get(srv.URL + "/state/user?" + query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	r.scan.Lock() // a scan in progress
	if got := status("user=u1"); got != http.StatusTooManyRequests {
		t.Errorf("a second scan: %d, want 429", got)
	}
	if got := status("user=u1&business=biz-a"); got != http.StatusOK {
		t.Errorf("a view of one business during a scan: %d, want 200", got)
	}
	r.scan.Unlock()
	if got := status("user=u1"); got != http.StatusOK {
		t.Errorf("a scan after the other ended: %d, want 200", got)
	}
}
