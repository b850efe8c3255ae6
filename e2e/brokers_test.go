package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// clusterScripts returns the folder of deploy/kafka's cluster scripts, or ""
// if they cannot be found from the module root.
func clusterScripts(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	dir := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "deploy", "kafka")
	for _, s := range []string{"cluster-up.sh", "cluster-down.sh", "lib.sh"} {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			return ""
		}
	}
	return dir
}

// runScript runs one of deploy/kafka's scripts and returns how long it took;
// it fails the test with the script's output if the script fails.
func runScript(t *testing.T, dir, script string, args ...string) time.Duration {
	t.Helper()
	took, out, err := tryScript(dir, script, args...)
	if err != nil {
		t.Fatalf("%s %s: %v after %s\n%s", script, strings.Join(args, " "), err, took.Round(time.Millisecond), out)
	}
	return took
}

func tryScript(dir, script string, args ...string) (time.Duration, []byte, error) {
	start := time.Now()
	cmd := exec.Command(filepath.Join(dir, script), args...)
	cmd.Dir = filepath.Dir(filepath.Dir(dir)) // the module root, as the README runs them
	out, err := cmd.CombinedOutput()
	return time.Since(start), out, err
}

// restartBrokers runs cluster-up.sh to bring a killed broker back, up to
// three times: the subject of the test is the pipeline, so a start of the
// broker that fails (once seen in CI, exiting within 0.3 s without a
// message) is logged and tried again rather than failing the test. It
// returns the time of the attempt that worked.
func restartBrokers(t *testing.T, dir string) time.Duration {
	t.Helper()
	for attempt := 1; ; attempt++ {
		took, out, err := tryScript(dir, "cluster-up.sh")
		if err == nil {
			return took
		}
		if attempt == 3 {
			t.Fatalf("cluster-up.sh failed 3 times; the last: %v after %s\n%s", err, took.Round(time.Millisecond), out)
		}
		t.Logf("cluster-up.sh attempt %d failed (%v after %s), trying again:\n%s", attempt, err, took.Round(time.Millisecond), out)
		time.Sleep(2 * time.Second)
	}
}

// brokerRoles says what each broker of the cluster is to the pipeline: the
// transaction coordinator of an instance's transactional id, the group
// coordinator, the leader of partitions of its topics.
type brokerRoles struct {
	addr  map[int32]string // node id -> host:port
	roles map[int32][]string
	txn   map[string]int32 // instance -> its transaction coordinator
	group int32            // group coordinator
	lead  map[string]map[int32]int32
}

func (r brokerRoles) of(node int32) string {
	if len(r.roles[node]) == 0 {
		return "no coordinator, no leader of the pipeline's partitions"
	}
	return strings.Join(r.roles[node], ", ")
}

func describeRoles(ctx context.Context, c *cluster, instances []string) (brokerRoles, error) {
	r := brokerRoles{addr: map[int32]string{}, roles: map[int32][]string{}, txn: map[string]int32{}, lead: map[string]map[int32]int32{}}
	m, err := c.adm.BrokerMetadata(ctx)
	if err != nil {
		return r, fmt.Errorf("metadata: %w", err)
	}
	for _, b := range m.Brokers {
		r.addr[b.NodeID] = net.JoinHostPort(b.Host, fmt.Sprint(b.Port))
	}
	var ids []string
	for _, in := range instances {
		ids = append(ids, c.group+"-"+in) // pipeline.Runner: TransactionalID(group + "-" + instance id)
	}
	for _, in := range instances {
		fc := c.adm.FindTxnCoordinators(ctx, c.group+"-"+in)[c.group+"-"+in]
		if fc.Err != nil {
			return r, fmt.Errorf("transaction coordinator of %s: %w", in, fc.Err)
		}
		r.txn[in] = fc.NodeID
		r.roles[fc.NodeID] = append(r.roles[fc.NodeID], "transaction coordinator of "+in)
	}
	fc := c.adm.FindGroupCoordinators(ctx, c.group)[c.group]
	if fc.Err != nil {
		return r, fmt.Errorf("group coordinator: %w", fc.Err)
	}
	r.group = fc.NodeID
	r.roles[fc.NodeID] = append(r.roles[fc.NodeID], "group coordinator")
	tds, err := c.adm.ListTopics(ctx, c.names.Interactions, c.names.Inbox, c.names.Changelog)
	if err != nil {
		return r, fmt.Errorf("list topics: %w", err)
	}
	for _, topic := range []struct{ name, short string }{{c.names.Changelog, "changelog"}, {c.names.Inbox, "inbox"}, {c.names.Interactions, "interactions"}} {
		td := tds[topic.name]
		if td.Err != nil {
			return r, fmt.Errorf("topic %s: %w", topic.name, td.Err)
		}
		r.lead[topic.short] = map[int32]int32{}
		byNode := map[int32][]string{}
		for _, p := range td.Partitions.Sorted() {
			r.lead[topic.short][p.Partition] = p.Leader
			byNode[p.Leader] = append(byNode[p.Leader], fmt.Sprintf("p%d", p.Partition))
		}
		for n, ps := range byNode {
			r.roles[n] = append(r.roles[n], fmt.Sprintf("leader of %s %s", topic.short, strings.Join(ps, ",")))
		}
	}
	return r, nil
}

// TestBrokerKill runs two `sponsor run` instances against the three-node
// Apache Kafka cluster of deploy/kafka (cluster-up.sh) and kills brokers
// with SIGKILL mid-run, one at a time, bringing each back before the next:
// first the transaction coordinator of instance a's transactional id, then
// the group coordinator (or, if that is the broker just restarted, another
// coordinator), then the leader of a changelog partition. With replication
// factor 3 and min.insync.replicas 2 the pipeline must go on with two
// brokers, and the inbox must end up exactly the oracle's.
//
// Runs only when KAFKA_CLUSTER_BROKERS names that cluster, e.g.
//
//	deploy/kafka/cluster-up.sh
//	KAFKA_CLUSTER_BROKERS=127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096 go test -count=1 -run TestBrokerKill -v -timeout 15m ./e2e/
//	deploy/kafka/cluster-down.sh --wipe
//
// An instance that stops under a broker fault fails the test; it is
// restarted on its state folder so that the run still checks the inbox.
func TestBrokerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("broker kill test: slow; skipped in -short mode")
	}
	brokers := os.Getenv("KAFKA_CLUSTER_BROKERS")
	if brokers == "" {
		t.Skip("KAFKA_CLUSTER_BROKERS is not set (the three-node cluster of deploy/kafka/cluster-up.sh)")
	}
	scripts := clusterScripts(t)
	if scripts == "" {
		t.Skip("deploy/kafka/cluster-{up,down}.sh not found from the module root")
	}
	start := time.Now()
	// Every node up before the topics are created (replication 3), and
	// again at the end whatever happened, so the cluster is left whole.
	t.Logf("cluster-up.sh (starts only stopped nodes): %s", runScript(t, scripts, "cluster-up.sh").Round(time.Millisecond))
	killed := map[int32]bool{} // nodes down now
	t.Cleanup(func() {
		if len(killed) > 0 {
			t.Logf("cleanup: restarting the killed node(s) %v: %s", killed, runScript(t, scripts, "cluster-up.sh").Round(time.Millisecond))
		}
	})

	sponsorBinary(t)
	sc := newScenario(scenarioConfig{Seed: 17, Users: 3000, Businesses: 20, Interactions: 20000, Campaigns: 24})
	want, tally := expectedDeliveries(sc.Interactions, sc.Campaigns, defaultOracle)
	logTally(t, tally, allOutcomes...)
	const parts = 4
	t.Setenv("KAFKA_BROKERS", brokers) // newCluster: a real Kafka, topics with a unique prefix
	c := newCluster(t, "brokerkill", parts)

	// The topics must survive one broker down: replication 3, and
	// min.insync.replicas 2 so an acks=all write is on two brokers.
	ctx := testContext(t, 30*time.Second)
	topicNames := []string{c.names.Interactions, c.names.Campaigns, c.names.Inbox, c.names.DeadLetter, c.names.Changelog}
	tds, err := c.adm.ListTopics(ctx, topicNames...)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	for _, name := range topicNames {
		for _, p := range tds[name].Partitions {
			if len(p.Replicas) != 3 {
				t.Fatalf("%s/%d has replicas %v: want 3 (cluster-up.sh sets default.replication.factor=3 and topics.Catalog asks for the default)", name, p.Partition, p.Replicas)
			}
		}
	}
	rcs, err := c.adm.DescribeTopicConfigs(ctx, c.names.Inbox, c.names.Changelog)
	if err != nil {
		t.Fatalf("describe topic configs: %v", err)
	}
	for _, rc := range rcs {
		for _, cf := range rc.Configs {
			if cf.Key == "min.insync.replicas" && cf.MaybeValue() != "2" {
				t.Fatalf("%s: min.insync.replicas=%s, want 2 (cluster-up.sh)", rc.Name, cf.MaybeValue())
			}
		}
	}

	c.produceScenario(t, sc)
	t.Logf("real cluster %s; produced %d campaign records and %d interactions; %d deliveries expected; %s",
		brokers, len(sc.Campaigns), len(sc.Interactions), len(want), time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	logDir := t.TempDir()
	instances := []string{"a", "b"}
	args := func(id string) []string {
		return []string{"run", "--brokers", brokers, "--registry", c.registry, "--topic-prefix", c.prefix,
			"--state-dir", filepath.Join(logDir, "state-"+id), "--group", c.group, "--instance-id", id, "--http", "127.0.0.1:0",
			"--partitions", fmt.Sprint(parts), "--fanout-chunk", "10", "--max-poll-records", "25",
			"--session-timeout", "6s", "--log-level", "info"}
	}
	runs := 0
	var allProcs []*proc // every incarnation, for the figures
	launch := func(id string) *proc {
		runs++
		p := startProc(t, id, args(id), logDir, runs)
		allProcs = append(allProcs, p)
		return p
	}
	procs := []*proc{launch("a"), launch("b")}
	var exits []string
	// alive checks that no instance stopped. One that did (a broker fault
	// must not stop an instance: SREs would see a crash loop) fails the
	// test, and is restarted on its state folder so that the run still
	// checks the inbox for losses and duplicates.
	alive := func() error {
		for i, p := range procs {
			if err := p.exited(); err != nil {
				last := lastLines(p.log, 12)
				t.Errorf("instance %s stopped under broker faults: %v; its last log lines:\n%s", p.name, err, last)
				exits = append(exits, fmt.Sprintf("%s: %s", p.name, lastLine(p.log)))
				procs[i] = launch(p.name)
			}
		}
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				logWarnings(t, p, 12)
				dumpTail(t, p.log, 30)
			}
		}
	})

	// committed is the sum of the inbox's last stable offsets (what a
	// read_committed reader can see, control records included): it grows
	// only when a transaction commits. ok is false while a partition has
	// no leader (a broker just died), which is not an error here.
	committed := func() (n int64, ok bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lo, err := c.adm.ListCommittedOffsets(ctx, c.names.Inbox)
		if err != nil {
			return 0, false
		}
		seen := 0
		ok = true
		lo.Each(func(o kadm.ListedOffset) {
			seen++
			if o.Err != nil {
				ok = false
			}
			n += o.Offset
		})
		return n, ok && seen == parts
	}
	// waitCommitted waits until the committed inbox grew by need records
	// beyond from; it returns when it first grew at all and when it had
	// grown enough. The limit is a liveness bound, not a timed assertion.
	// txns is each instance's count of committed (non-empty) transactions.
	txns := func() map[string]float64 {
		out := map[string]float64{}
		for _, p := range procs {
			if m := scrapeCounters(metricsURL(p)); m != nil {
				out[p.name] = m["sponsor_transactions_total"]
			}
		}
		return out
	}
	// waitCommitted waits until the committed inbox grew by need records
	// beyond from. It returns how long that took and, per instance, how long
	// until its first transaction committed after t0 (none: not seen).
	waitCommitted := func(what string, t0 time.Time, base map[string]float64, from, need int64) (enough time.Duration, firstTxn map[string]time.Duration) {
		t.Helper()
		if base == nil {
			base = txns()
		}
		firstTxn = map[string]time.Duration{}
		deadline := time.Now().Add(180 * time.Second)
		for {
			alive()
			for name, n := range txns() {
				// n != base: a restarted instance counts from 0 again.
				if _, seen := firstTxn[name]; !seen && n != base[name] && n > 0 {
					firstTxn[name] = time.Since(t0)
				}
			}
			if n, ok := committed(); ok && n-from >= need && enough == 0 {
				enough = time.Since(t0)
			}
			// Done with the progress wanted and a commit of every
			// instance, or with the progress and 20s more (an instance
			// may have nothing left to do).
			if enough > 0 && (len(firstTxn) == len(procs) || time.Since(t0) > enough+20*time.Second) {
				return enough, firstTxn
			}
			if time.Now().After(deadline) {
				n, ok := committed()
				t.Fatalf("%s: the committed inbox grew by %d records (listing ok %v) in 180s, want %d; instances' first commits %v", what, n-from, ok, need, firstTxn)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
	total := int64(len(want))
	// need is a random amount of progress, never more than half of what
	// is left to deliver.
	need := func() int64 {
		left := total - int64(len(c.readAll(t, c.names.Inbox)))
		return min(40+rng.Int64N(max(total/25, 41)), max(left/2, 0))
	}
	members := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs, err := c.adm.DescribeGroups(ctx, c.group)
		if err != nil {
			return -1
		}
		return len(gs[c.group].Members)
	}
	for deadline := time.Now().Add(120 * time.Second); members() != 2; time.Sleep(100 * time.Millisecond) {
		alive()
		if time.Now().After(deadline) {
			t.Fatalf("the group has %d members after 120s, want 2", members())
		}
	}
	n0, _ := committed()
	waitCommitted("two instances on three brokers", time.Now(), nil, n0, need())

	// The internal topics the kills hit must be replicated too.
	if tds, err := c.adm.ListTopicsWithInternal(ctx, "__transaction_state", "__consumer_offsets"); err == nil {
		for name, td := range tds {
			for _, p := range td.Partitions {
				if len(p.Replicas) != 3 {
					t.Fatalf("%s/%d has replicas %v: want 3 (cluster-up.sh: offsets/transaction.state.log.replication.factor)", name, p.Partition, p.Replicas)
				}
			}
		}
	}

	type brokerKill struct {
		node             int32
		addr, roles, why string
		inbox            int64                    // committed inbox at the kill
		firstTxn         map[string]time.Duration // broker gone -> the instance's first commit with it down
		progress         time.Duration            // broker gone -> the wanted progress with it down
		progressRecords  int64
		restart          time.Duration // cluster-up.sh
		afterRestart     time.Duration // restart done -> the wanted progress on three brokers
	}
	var kills []brokerKill
	var everKilled []int32
	kill := func(pick func(r brokerRoles) (int32, string)) {
		t.Helper()
		progressRecords := need()
		ctx := testContext(t, 30*time.Second)
		r, err := describeRoles(ctx, c, instances)
		if err != nil {
			t.Fatalf("roles of the brokers: %v", err)
		}
		node, why := pick(r)
		if node < 1 || node > 3 {
			t.Fatalf("no broker to kill (%s): node %d; roles %v", why, node, r.roles)
		}
		k := brokerKill{node: node, addr: r.addr[node], roles: r.of(node), why: why, progressRecords: progressRecords}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond) // a random moment in a transaction
		k.inbox, _ = committed()
		runScript(t, scripts, "cluster-down.sh", "--node", fmt.Sprint(node), "--kill")
		killed[node] = true
		everKilled = append(everKilled, node)
		// cluster-down.sh acts on the nodes of its run folder: make sure
		// it was the broker the clients know as this node that died.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			conn, err := net.DialTimeout("tcp", k.addr, time.Second)
			if err != nil {
				break
			}
			conn.Close()
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatalf("node %d (%s) still accepts connections after cluster-down.sh --node %d --kill: KAFKA_CLUSTER_BROKERS is not the cluster of deploy/kafka's scripts (SPONSOR_KAFKA_RUN_DIR, SPONSOR_KAFKA_CLUSTER_BASE_PORT)", node, k.addr, node)
		}
		// From here the broker is gone: a transaction that commits now
		// went through the two others.
		deadAt, base := time.Now(), txns()
		t.Logf("broker kill %d: node %d (%s) SIGKILLed, chosen as %s; its roles: %s; committed inbox at %d",
			len(kills)+1, node, k.addr, why, k.roles, k.inbox)
		k.progress, k.firstTxn = waitCommitted(fmt.Sprintf("two brokers after killing node %d", node), deadAt, base, k.inbox, k.progressRecords)
		k.restart = restartBrokers(t, scripts)
		delete(killed, node)
		from, _ := committed()
		k.afterRestart, _ = waitCommitted(fmt.Sprintf("three brokers after node %d came back", node), time.Now(), nil, from, need())
		t.Logf("broker kill %d: first commit once the broker was gone: %s; %d records committed in %s with two brokers; node %d back in %s (cluster-up.sh), then that much progress in %s",
			len(kills)+1, fmtFirst(k.firstTxn, instances), k.progressRecords, k.progress.Round(time.Millisecond), node,
			k.restart.Round(time.Millisecond), k.afterRestart.Round(time.Millisecond))
		kills = append(kills, k)
	}
	// Kill 1: the transaction coordinator of a's transactional id.
	kill(func(r brokerRoles) (int32, string) { return r.txn["a"], "transaction coordinator of a" })
	// Kill 2: the group coordinator, unless it is the broker just
	// restarted; then b's transaction coordinator, or any other broker.
	kill(func(r brokerRoles) (int32, string) {
		last := kills[len(kills)-1].node
		switch {
		case r.group != last:
			return r.group, "group coordinator"
		case r.txn["b"] != last:
			return r.txn["b"], "transaction coordinator of b"
		}
		return last%3 + 1, "another broker"
	})
	// Kill 3: the leader of a changelog partition, preferably on a broker
	// not killed yet.
	kill(func(r brokerRoles) (int32, string) {
		var cands []int32
		for p := range int32(parts) {
			if l := r.lead["changelog"][p]; l > 0 && !slices.Contains(cands, l) {
				cands = append(cands, l)
			}
		}
		slices.SortFunc(cands, func(x, y int32) int {
			return boolInt(slices.Contains(everKilled, x)) - boolInt(slices.Contains(everKilled, y))
		})
		if len(cands) == 0 {
			return -1, "changelog leader"
		}
		var ps []string
		for p := range int32(parts) {
			if r.lead["changelog"][p] == cands[0] {
				ps = append(ps, fmt.Sprint(p))
			}
		}
		return cands[0], "leader of changelog partition(s) " + strings.Join(ps, ",")
	})

	c.waitSettled(t, campaignIDs(sc.Campaigns), 240*time.Second, alive)

	final := map[string]map[string]float64{}
	for _, p := range procs {
		final[p.name] = scrapeCounters(metricsURL(p))
	}
	for _, p := range procs {
		p.term(t)
	}
	rep := c.checkInbox(t, sc, want)

	var failed, fetchErrs int
	for _, p := range allProcs {
		lf, le := countLog(p.log, "transaction failed"), countLog(p.log, "fetch error")
		failed += lf
		fetchErrs += le
		m := final[p.name]
		if !slices.Contains(procs, p) {
			t.Logf("instance %s (an earlier incarnation): failed (retried) iterations %d, fetch errors %d", p.name, lf, le)
			continue
		}
		t.Logf("instance %s: transactions committed %.0f, aborted %.0f, deliveries %.0f, interactions %.0f; failed (retried) iterations %d, fetch errors %d, producer resets (fenced, rejoined) %.0f",
			p.name, m["sponsor_transactions_total"], m["sponsor_transaction_aborts_total"], m["sponsor_deliveries_total"], m["sponsor_interactions_total"], lf, le, m["sponsor_producer_resets_total"])
	}
	var summary []string
	for i, k := range kills {
		summary = append(summary, fmt.Sprintf("#%d node %d [%s]: first commit %s; %d records in %s; restart %s",
			i+1, k.node, k.roles, fmtFirst(k.firstTxn, instances), k.progressRecords, k.progress.Round(time.Millisecond), k.restart.Round(time.Millisecond)))
	}
	t.Logf("broker kills %d: %s", len(kills), strings.Join(summary, "; "))
	t.Logf("inbox records %d, deliveries %d, expected %d, duplicates %d, missing %d, extra %d, wrong %d; failed transactions %d, fetch errors %d; instance exits %d %v; %s",
		rep.Records, rep.Deliveries, rep.Expected, len(rep.Duplicates), len(rep.Missing), len(rep.Extra), len(rep.Wrong),
		failed, fetchErrs, len(exits), exits, time.Since(start).Round(time.Millisecond))
}

// metricsURL returns the /metrics URL an instance logged at start ("" if it
// has not logged it yet).
func metricsURL(p *proc) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if i := bytes.Index(l, []byte("msg=\"serving /metrics")); i >= 0 {
			if j := bytes.Index(l, []byte(" addr=")); j >= 0 {
				return strings.Fields(string(l[j+len(" addr="):]))[0] + "/metrics"
			}
		}
	}
	return ""
}

// scrapeText returns an instance's /metrics at url, in the text format;
// false if it does not answer.
func scrapeText(url string) (string, bool) {
	if url == "" {
		return "", false
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// scrapeCounters reads the unlabelled sponsor_* samples of an instance's
// /metrics; nil if it does not answer.
func scrapeCounters(url string) map[string]float64 {
	b, ok := scrapeText(url)
	if !ok {
		return nil
	}
	out := map[string]float64{}
	for _, l := range strings.Split(b, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], "sponsor_") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

func fmtFirst(first map[string]time.Duration, instances []string) string {
	var out []string
	for _, in := range instances {
		if d, ok := first[in]; ok {
			out = append(out, fmt.Sprintf("%s %s", in, d.Round(time.Millisecond)))
		} else {
			out = append(out, in+" none seen")
		}
	}
	return strings.Join(out, ", ")
}

// lastLines returns the last n lines of a file.
func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}

func lastLine(path string) string { return lastLines(path, 1) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countLog(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte(s))
}

// logWarnings logs the first n WARN and ERROR lines of an instance's log.
func logWarnings(t *testing.T, p *proc, n int) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte("level=WARN")) || bytes.Contains(l, []byte("level=ERROR")) {
			if n--; n < 0 {
				return
			}
			t.Logf("%s: %s", p.name, l)
		}
	}
}
