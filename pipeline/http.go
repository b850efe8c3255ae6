package pipeline

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/state"
)

// Handler serves the runner's operational endpoints:
//
//	/metrics     Prometheus metrics (the runner's counters and gatherer's)
//	/healthz     200 while the process is up
//	/readyz      200 once every assigned task is restored, 503 before
//	/state/user  ?user=U[&business=B]: what the state knows about user U
//	             (a [state.UserView] as JSON; each partition says whether
//	             the instance owns it now or holds a stale copy), 404 when
//	             no partition of the instance's store holds U, 503 while the
//	             store is not open
//
// The handlers read the runner only through instanceState: they may serve
// before, during and after Run.
func (r *Runner) Handler(g prometheus.Gatherer) http.Handler {
	return newHandler(r, &r.scan, g)
}

// instanceState is what the HTTP handlers read of an instance. Its methods
// are safe to call from any goroutine, at any time.
type instanceState interface {
	// Ready reports whether the instance has joined its group and
	// restored every task it owns.
	Ready() bool
	// withStore calls fn with the state store, if it is open, and reports
	// whether it was; the store stays open until fn returns.
	withStore(fn func(*state.Store)) bool
	// ownedPartitions returns the partitions whose tasks the instance
	// owns now, sorted (nil before it joined).
	ownedPartitions() []int32
	// rules returns the rules the instance runs with (Config.Policy).
	rules() policy.Config
}

func (r *Runner) withStore(fn func(*state.Store)) bool { return r.view.with(fn) }
func (r *Runner) rules() policy.Config                 { return r.cfg.Policy }

func (r *Runner) ownedPartitions() []int32 {
	if o := r.owned.Load(); o != nil {
		return *o
	}
	return nil
}

// newHandler returns the endpoints of Handler over in. scan is held by the
// one /state/user scan of whole partitions allowed at a time.
func newHandler(in instanceState, scan *sync.Mutex, g prometheus.Gatherer) http.Handler {
	s := &stateHandler{in: in, scan: scan}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !in.Ready() {
			http.Error(w, "restoring or not yet joined\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /state/user", s.serveUser)
	return mux
}

// stateHandler serves /state/user.
type stateHandler struct {
	in   instanceState
	scan *sync.Mutex
}

// StateError is the JSON body of a /state/user answer that is not 200.
type StateError struct {
	Error string `json:"error"`
}

// serveUser answers /state/user from the committed state (the store, not
// the tasks' uncommitted batches): Pebble reads are safe alongside the
// tasks' writes.
func (s *stateHandler) serveUser(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	user, business := q.Get("user"), q.Get("business")
	if user == "" {
		writeJSON(w, http.StatusBadRequest, StateError{"missing query parameter user"})
		return
	}
	if business == "" {
		// Without a business the view scans every contact of each
		// partition (about 0.9 s per 10M), under the read lock that a
		// shutdown waits for: one such scan at a time, so that a flood of
		// requests cannot hold the store.
		if !s.scan.TryLock() {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, StateError{"another /state/user without business is scanning the state; retry, or name the business"})
			return
		}
		defer s.scan.Unlock()
	}
	var (
		v   state.UserView
		err error
	)
	rules := s.in.rules() // the rules this instance runs with: its retention and grace
	if rules == (policy.Config{}) {
		rules = policy.DefaultConfig()
	}
	pol, err := policy.New(rules)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, StateError{err.Error()})
		return
	}
	ok := s.in.withStore(func(st *state.Store) { v, err = st.User(user, business, pol) })
	var nf *state.NotFoundError
	switch {
	case !ok:
		writeJSON(w, http.StatusServiceUnavailable, StateError{"the state store is not open (starting or stopping)"})
	case errors.As(err, &nf):
		writeJSON(w, http.StatusNotFound, StateError{err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, StateError{err.Error()})
	default:
		owned := s.in.ownedPartitions()
		for i := range v.Partitions {
			own := slices.Contains(owned, v.Partitions[i].Partition)
			v.Partitions[i].Owned = &own
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// storeRef hands the runner's store to the HTTP handlers: set while the
// store is open, so that no read runs on a closed store.
type storeRef struct {
	mu sync.RWMutex
	s  *state.Store
}

func (r *storeRef) set(s *state.Store) {
	r.mu.Lock()
	r.s = s
	r.mu.Unlock()
}

// with calls fn with the store, if it is open, and reports whether it was.
func (r *storeRef) with(fn func(*state.Store)) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.s == nil {
		return false
	}
	fn(r.s)
	return true
}
