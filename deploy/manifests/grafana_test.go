package manifests

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/state"
)

// exportedMetrics returns the metric families the pipeline's /metrics
// serves, by registering them as cmd/sponsor does on a fresh registry and
// gathering: name -> type. The Kafka client metrics (kprom) exist only
// once a client is built and their series once it has produced and
// fetched: a client with the runner's metrics option produces a record to
// an in-process kfake broker and fetches it back first. The families whose
// series exist only while something is going on (a fan-out in progress,
// the owned partitions' last stable offsets) are taken from what the
// runner's collectors describe, typed UNTYPED: their names are what the
// dashboard and the alert rules must match.
func exportedMetrics(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r, err := pipeline.New(pipeline.Config{Brokers: []string{"localhost:9092"}, Registry: "http://localhost:8081", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	described := &describingRegisterer{Registerer: reg}
	if err := r.Register(described); err != nil {
		t.Fatal(err)
	}
	// The runner's store metrics appear once Run opens its store: gather
	// them from a store opened here, on a registry of their own (the names
	// are the same).
	store, err := state.Open(filepath.Join(t.TempDir(), "pebble"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	storeReg := prometheus.NewRegistry()
	storeReg.MustRegister(pipeline.StoreCollector(store))

	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.ListenAddrs()...), kgo.ConsumeTopics("metrics"),
		pipeline.KafkaClientMetrics(reg, pipeline.ClientSession))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "metrics", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce to kfake: %v", err)
	}
	if fs := cl.PollFetches(ctx); fs.NumRecords() == 0 {
		t.Fatalf("fetch from kfake: no record (%v)", fs.Errors())
	}

	// kprom counts a produced batch in a hook franz-go may run after the
	// record's promise (ProduceSync returns on the promise): wait for the
	// per-topic series to show rather than read them once (CI once gathered
	// before the produce hook had run).
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		smfs, err := storeReg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]dto.MetricType{}
		for _, mf := range append(mfs, smfs...) {
			out[mf.GetName()] = mf.GetType()
		}
		for _, n := range described.names() {
			if _, ok := out[n]; !ok {
				out[n] = dto.MetricType_UNTYPED
			}
		}
		_, produced := out["sponsor_kafka_produce_records_total"]
		_, fetched := out["sponsor_kafka_fetch_records_total"]
		if produced && fetched || ctx.Err() != nil {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// describingRegisterer registers on Registerer and keeps the collectors,
// to list the metric names they describe.
type describingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (d *describingRegisterer) Register(c prometheus.Collector) error {
	d.collectors = append(d.collectors, c)
	return d.Registerer.Register(c)
}

func (d *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// descName finds the name in a prometheus.Desc's String(), which is the
// only place the package shows it.
var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// names returns the metric names the registered collectors describe.
func (d *describingRegisterer) names() []string {
	var out []string
	for _, c := range d.collectors {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for desc := range ch {
			if m := descName.FindStringSubmatch(desc.String()); m != nil {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// dashboardQueries returns every PromQL expression of a Grafana dashboard:
// the panels' targets (rows' nested panels too) and the query variables.
func dashboardQueries(t *testing.T, b []byte) []string {
	t.Helper()
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard has no uid or title")
	}
	var exprs []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable query %s: %v", v.Query, err)
			}
			q.Query = s
		}
		exprs = append(exprs, q.Query)
	}
	return exprs
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers  = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promNumber    = regexp.MustCompile(`^(\d|Inf$|NaN$)`)
	promNotMetric = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "inf": true, "nan": true,
		"e": true, // exponent of 1e-9, after the digits were split off
	}
)

// promMetrics returns the metric names a PromQL expression (or Grafana's
// label_values(metric, label)) reads: identifiers outside label matchers,
// ranges, strings and grouping clauses that are not followed by "(" (a
// function or aggregation) and are not keywords or numbers.
func promMetrics(expr string) []string {
	e := strings.ReplaceAll(expr, "$__rate_interval", "5m")
	e = promStrings.ReplaceAllString(e, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	if rest, ok := strings.CutPrefix(strings.TrimSpace(e), "label_values("); ok {
		// label_values(metric, label): only the first argument is a metric.
		e, _, _ = strings.Cut(rest, ",")
	}
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if loc[0] > 0 && (e[loc[0]-1] == '$' || e[loc[0]-1] == '.' || e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9') {
			continue // a variable, or the tail of a number (1e-9)
		}
		if next := strings.TrimLeft(e[loc[1]:], " \t\n"); strings.HasPrefix(next, "(") {
			continue // a function or an aggregation
		}
		if promNotMetric[strings.ToLower(id)] || promNumber.MatchString(id) {
			continue
		}
		names = append(names, id)
	}
	return names
}

func TestPromMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (reason) (rate(sponsor_suppressions_total{job=~"$job", reason!="x"}[$__rate_interval]))`: {"sponsor_suppressions_total"},
		`a_total / clamp_min(b_total + c_total, 1e-9)`:                                                   {"a_total", "b_total", "c_total"},
		`label_values(sponsor_tasks{job=~"$job"}, pod)`:                                                  {"sponsor_tasks"},
		`sum(x) without (pod) > bool 0 and on (job) y offset 5m`:                                         {"x", "y"},
	} {
		if got := promMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promMetrics(%s) = %v, want %v", expr, got, want)
		}
	}
}

// TestGrafanaDashboard checks that deploy/grafana/sponsor.json reads only
// metrics the pipeline exports (a renamed metric breaks this test, not the
// dashboard), and that it shows every sponsor_* metric of the pipeline's
// own and the main Kafka client ones.
func TestGrafanaDashboard(t *testing.T) {
	exported := exportedMetrics(t)
	exprs := dashboardQueries(t, readFile(t, "deploy/grafana/sponsor.json"))
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := promMetrics(e)
		if len(names) == 0 {
			t.Errorf("query reads no metric: %s", e)
		}
		for _, n := range names {
			used[n] = true
			if _, ok := exported[n]; ok {
				continue
			}
			// A histogram's or summary's series.
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if typ, ok := exported[base]; ok && base != n && (typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY) {
				used[base] = true
				continue
			}
			t.Errorf("the dashboard reads %s, which the pipeline does not export (query: %s)", n, e)
		}
	}
	for n := range exported {
		if strings.HasPrefix(n, "sponsor_") && !strings.HasPrefix(n, pipeline.KafkaMetricsNamespace+"_") && !used[n] {
			t.Errorf("the pipeline exports %s, but no panel of the dashboard shows it", n)
		}
	}
	for _, n := range []string{"process_resident_memory_bytes", "go_goroutines",
		"sponsor_kafka_produce_records_total", "sponsor_kafka_produce_uncompressed_bytes_total",
		"sponsor_kafka_fetch_records_total", "sponsor_kafka_request_duration_e2e_seconds"} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}
