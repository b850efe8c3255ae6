package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/state"
)

const stateUsage = `Usage:
  sponsor state get --user U [--business B] (--state-dir DIR | --from http://HOST:PORT)
  sponsor state rebuild --brokers HOST:PORT[,...] --state-dir DIR [--group G] [--shadow NAME] [--topic-prefix P] [--partitions 0,1,...]

get prints as indented JSON what the pipeline's state knows about a user:
the partition(s) holding them, each contact (last interaction per kind,
blocked or opted out and since when, last delivery, expired or not under
the instance's --contact-retention and --grace, given here as to
sponsor run when reading a folder), the deliveries the 24-hour windows count and the
recipient record. It reads a stopped instance's state folder, or asks a
running instance through its --http address (GET /state/user).

rebuild rebuilds a state folder from the group's changelog topic (with
--shadow NAME, that of the shadow run NAME of the group, as 'sponsor run
--shadow NAME' keeps it), for every changelog partition or those listed,
as an instance restores on assignment. The folder must not be in use by a
running instance.
`

// stateGetUsage and stateRebuildUsage are the help of state get and state
// rebuild.
const (
	stateGetUsage     = stateUsage + "\nFlags of get (also SPONSOR_<NAME> in the environment):\n"
	stateRebuildUsage = stateUsage + "\nFlags of rebuild (also SPONSOR_<NAME> in the environment; --registry is not needed):\n"
)

func cmdStateGet(ctx context.Context, fs *flagSet, std stdio) error {
	var user, business, dir, from string
	var retention, grace time.Duration
	fs.StringVar(&user, "user", "", "the user id (required)")
	fs.StringVar(&business, "business", "", "show only the contact with this business")
	registerStateDir(fs.FlagSet, &dir, "state folder of a stopped instance (its --state-dir)")
	fs.StringVar(&from, "from", "", "ask a running instance at its --http address, e.g. http://127.0.0.1:8080")
	registerRetention(fs.FlagSet, &retention, "with --state-dir: the instance's --contact-retention, which judges a contact's expiry (a running instance asked --from uses its own)")
	registerGrace(fs.FlagSet, &grace, "with --state-dir: the instance's --grace, which judges a contact's expiry (a running instance asked --from uses its own)")
	if _, err := fs.parse(); err != nil {
		return err
	}
	var err error
	switch {
	case user == "":
		return errors.New("--user is required")
	case (dir == "") == (from == ""):
		return errors.New("give exactly one of --state-dir DIR and --from http://HOST:PORT")
	}
	var v state.UserView
	if from != "" {
		v, err = userFromHTTP(ctx, from, user, business)
	} else {
		var pol *policy.Policy
		if pol, err = policy.New(policy.Config{ContactRetention: retention, Grace: grace}); err != nil {
			return err
		}
		v, err = userFromFolder(dir, user, business, pol)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(std.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// userFromFolder reads the user's view from a state folder, opened
// read-only: a --state-dir, or the --data folder of `sponsor dev`; pol
// judges expiry.
func userFromFolder(dir, user, business string, pol *policy.Policy) (state.UserView, error) {
	given := dir
	dir = resolveStateDir(dir)
	if !exists(pebbleDir(dir)) {
		return state.UserView{}, fmt.Errorf("no state store in %s: give the --state-dir of `sponsor run` (it holds pebble/) or the --data folder of `sponsor dev` (its state is in state/; `make run` uses ./data)", given)
	}
	s, err := state.OpenReadOnly(pebbleDir(dir), state.Options{CacheSize: 8 << 20})
	if errors.Is(err, state.ErrLocked) {
		return state.UserView{}, fmt.Errorf("the folder %s is in use by a running instance: use --from http://<its --http address>", dir)
	}
	if err != nil {
		return state.UserView{}, err
	}
	defer s.Close()
	return s.User(user, business, pol)
}

// userFromHTTP asks a running instance's /state/user endpoint.
func userFromHTTP(ctx context.Context, base, user, business string) (state.UserView, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	q := url.Values{"user": {user}}
	if business != "" {
		q.Set("business", business)
	}
	u := strings.TrimSuffix(base, "/") + "/state/user?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var (
		resp *http.Response
		body []byte
	)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return state.UserView{}, fmt.Errorf("--from %s: %w", base, err)
		}
		if resp, err = http.DefaultClient.Do(req); err != nil {
			return state.UserView{}, fmt.Errorf("ask the instance at %s: %w", base, err)
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return state.UserView{}, fmt.Errorf("read the answer of %s: %w", u, err)
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			break
		}
		// Another scan of the whole state is running there: wait for it
		// (the instance says how long), within the request's deadline.
		wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || wait < 1 {
			wait = 1
		}
		select {
		case <-ctx.Done():
			return state.UserView{}, fmt.Errorf("%s: %s, and still busy after 30s", u, resp.Status)
		case <-time.After(time.Duration(wait) * time.Second):
		}
	}
	if resp.StatusCode != http.StatusOK {
		var e pipeline.StateError
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusNotFound {
				return state.UserView{}, errors.New(e.Error)
			}
			return state.UserView{}, fmt.Errorf("%s: %s: %s", u, resp.Status, e.Error)
		}
		return state.UserView{}, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var v state.UserView
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("decode the answer of %s: %w", u, err)
	}
	return v, nil
}

func cmdStateRebuild(ctx context.Context, fs *flagSet, std stdio) error {
	var (
		c           clientFlags
		dir         string
		parts       string
		parallelism int
	)
	c.register(fs.FlagSet)
	registerStateDir(fs.FlagSet, &dir, "state folder to rebuild, as given to 'sponsor run' (required)")
	c.registerRun(fs.FlagSet, "consumer group whose changelog to read",
		"rebuild the state of the shadow run NAME of the group (sponsor run --shadow NAME): its changelog <group>-shadow-NAME-state-changelog")
	fs.StringVar(&parts, "partitions", "", "changelog partitions to rebuild, e.g. 0,3 (default: all)")
	fs.IntVar(&parallelism, "parallel", pipeline.DefaultRestoreParallelism, "partitions restored at once")
	if _, err := fs.parse(); err != nil {
		return err
	}
	switch {
	case c.brokers == "":
		return errors.New("--brokers is required")
	case dir == "":
		return errors.New("--state-dir is required")
	case parallelism < 1:
		return errors.New("--parallel must be at least 1")
	}
	run, err := c.run()
	if err != nil {
		return err
	}
	wanted, err := parsePartitions(parts)
	if err != nil {
		return fmt.Errorf("--partitions: %w", err)
	}
	// Restore builds its consumers from the same options.
	opts, err := c.clientOpts()
	if err != nil {
		return err
	}

	dir = resolveStateDir(dir)
	store, err := state.Open(pebbleDir(dir), state.Options{})
	if errors.Is(err, state.ErrLocked) {
		return fmt.Errorf("the folder %s is in use by a running instance: stop it first (an instance restores its own partitions when they are assigned)", dir)
	}
	if err != nil {
		return err
	}
	defer store.Close()

	adm, err := newAdmin(opts)
	if err != nil {
		return err
	}
	defer adm.Close()
	changelog := run.Names().Changelog
	td, err := adm.ListTopics(ctx, changelog)
	if err != nil {
		return securityHint(fmt.Errorf("describe %s: %w", changelog, err))
	}
	d, ok := td[changelog]
	if !ok || d.Err != nil {
		return fmt.Errorf("changelog topic %s (group %q, prefix %q): %v", changelog, run.ConsumerGroup(), c.prefix, d.Err)
	}
	n := int32(len(d.Partitions))
	if len(wanted) == 0 {
		for p := range n {
			wanted = append(wanted, p)
		}
	}
	for _, p := range wanted {
		if p >= n {
			return fmt.Errorf("--partitions: %s has partitions 0 to %d, not %d", changelog, n-1, p)
		}
	}

	r := &rebuild{
		store: store, adm: adm, opts: opts, changelog: changelog,
		pos: make(map[int32]pipeline.RestoreProgress), progress: newProgress(std.err, isTerminal(std.err)),
		log: slog.New(slog.NewTextHandler(std.err, nil)),
	}
	if err := r.estimate(ctx, wanted); err != nil {
		return err
	}
	res, took, err := r.run(ctx, wanted, parallelism)
	if err != nil {
		return err
	}
	var total int64
	for _, x := range res {
		total += x.records
		fmt.Fprintf(std.out, "partition %d: %d records (changelog offsets %d to %d) in %s\n", x.p, x.records, x.from, x.end, x.took.Round(time.Millisecond))
	}
	fmt.Fprintf(std.out, "rebuilt %d partitions of %s into %s: %d records in %s (%.0f records/s)\n",
		len(res), changelog, dir, total, took.Round(time.Millisecond), rate(total, took))
	return nil
}

// parsePartitions parses "0,3,5"; empty gives nil (every partition).
func parsePartitions(s string) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	var ps []int32
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%q is not a partition number", f)
		}
		if !slices.Contains(ps, int32(p)) {
			ps = append(ps, int32(p))
		}
	}
	slices.Sort(ps)
	return ps, nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// rebuild restores changelog partitions into a store, with progress.
type rebuild struct {
	store     *state.Store
	adm       *kadm.Client
	opts      []kgo.Opt
	changelog string
	progress  *progress

	// guess is the offsets to read per partition, from the offsets before
	// the start: a partition's own report replaces it once it started.
	guess map[int32]int64

	mu  sync.Mutex
	pos map[int32]pipeline.RestoreProgress // latest report per partition
	log *slog.Logger                       // why a restore waits, when it waits long
}

// estimate guesses how many changelog offsets each partition has to read,
// for the progress bar and ETA.
func (r *rebuild) estimate(ctx context.Context, ps []int32) error {
	guess, err := pipeline.RestoreBacklog(ctx, r.adm, r.store, r.changelog, ps)
	if err != nil {
		return err
	}
	r.guess = guess
	return nil
}

type restored struct {
	p         int32
	records   int64
	from, end int64
	took      time.Duration
}

// run restores partitions ps, parallel at a time, and returns the result
// of each, in partition order, and the time it all took.
func (r *rebuild) run(ctx context.Context, ps []int32, parallel int) ([]restored, time.Duration, error) {
	start := time.Now()
	stop := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Go(func() {
		every := 5 * time.Second
		if r.progress.tty {
			every = 200 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.report(time.Since(start), false)
			}
		}
	})
	restores := pipeline.RestorePartitions(ctx, r.adm, r.store, r.changelog, ps, pipeline.RestoreOptions{
		Kafka:       r.opts,
		Parallelism: parallel,
		Progress: func(st pipeline.RestoreProgress) {
			r.mu.Lock()
			r.pos[st.Partition] = st
			r.mu.Unlock()
		},
		Log: r.log,
	})
	results := make([]restored, len(ps))
	errs := make([]error, len(ps))
	for i, x := range restores {
		if x.Err != nil {
			errs[i] = fmt.Errorf("restore partition %d of %s: %w", x.Partition, r.changelog, x.Err)
			continue
		}
		results[i] = restored{p: x.Partition, records: x.Records, from: x.From, end: x.End, took: x.Took}
	}
	close(stop)
	ticker.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, took, err
	}
	r.report(took, true)
	return results, took, nil
}

// report shows where the rebuild stands: records applied, and changelog
// offsets read out of those to read (known once each partition started).
func (r *rebuild) report(elapsed time.Duration, done bool) {
	r.mu.Lock()
	var records, read, total int64
	for p, guess := range r.guess {
		st, ok := r.pos[p]
		if !ok {
			total += guess
			continue
		}
		records += st.Records
		read += st.Next - st.From
		total += st.End - st.From
	}
	r.mu.Unlock()
	eta := time.Duration(-1)
	if read > 0 && total >= read {
		eta = time.Duration(float64(elapsed) * float64(total-read) / float64(read))
	}
	r.progress.reportCount(countProgress{
		What: "changelog records", Done: records, Offsets: read, Total: total,
		Rate: rate(records, elapsed), Elapsed: elapsed, ETA: eta, Finished: done,
	})
}
