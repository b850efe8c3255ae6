package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDevAfterShadowReplay walks the README's what-if flow against the
// embedded default, with the built binary, as a new user does:
//
//	sponsor dev --data D
//	sponsor replay --shadow x --to-start --yes
//	sponsor run --shadow x ...      (ready at once, not after 30 s per partition)
//	stop both; sponsor dev --data D (starts again: the shadow's subjects share
//	                                 schema ids with the real ones)
func TestDevAfterShadowReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary four times; skipped in -short mode")
	}
	data, logDir := t.TempDir(), t.TempDir()
	kafkaPort, registryPort, devHTTP, shadowHTTP := freePort(t), freePort(t), freePort(t), freePort(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	registry := fmt.Sprintf("http://127.0.0.1:%d", registryPort)
	devArgs := []string{"dev", "--data", data, "--kafka-port", fmt.Sprint(kafkaPort), "--registry-port", fmt.Sprint(registryPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", devHTTP), "--partitions", "2"}

	dev := startProc(t, "dev", devArgs, logDir, 1)
	waitReadyz(t, dev, devHTTP, 60*time.Second)
	// The banner lists every topic and every endpoint of --http.
	banner, err := os.ReadFile(dev.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"topics    interactions campaigns inbox deadletter decisions sponsor-state-changelog",
		"http      /metrics, /healthz, /readyz and /state/user",
		"serving /metrics, /healthz, /readyz and /state/user",
		"state: " + filepath.Join(data, "state"),
	} {
		if !strings.Contains(string(banner), want) {
			t.Errorf("sponsor dev's output has no %q:\n%s", want, banner)
		}
	}
	if out, _ := exec.Command(sponsorBinary(t), "run", "--help").CombinedOutput(); !strings.Contains(string(out), "/readyz and /state/user endpoints") {
		t.Errorf("sponsor run --help does not name /state/user under --http:\n%s", out)
	}

	if out, _, err := stateCLI(t, "replay", "--shadow", "x", "--to-start", "--yes", "--brokers", brokers, "--registry", registry); err != nil {
		t.Fatalf("replay --shadow x --to-start --yes: %v\n%s", err, out)
	}
	shadow := startProc(t, "shadow", []string{"run", "--shadow", "x", "--brokers", brokers, "--registry", registry,
		"--state-dir", filepath.Join(t.TempDir(), "shadow"), "--http", fmt.Sprintf("127.0.0.1:%d", shadowHTTP)}, logDir, 2)
	began := time.Now()
	waitReadyz(t, shadow, shadowHTTP, 90*time.Second)
	// Joining the group and restoring two empty changelog partitions takes
	// about 2 s; the restore used to wait 30 s for a state that would never
	// reach the offsets the replay had committed.
	if took := time.Since(began); took > 15*time.Second {
		t.Errorf("the shadow run after a replay was ready after %s, want a few seconds (log %s)", took.Round(time.Millisecond), shadow.log)
		dumpTail(t, shadow.log, 20)
	}
	subjects := registrySubjects(t, registry)
	if !slices.Contains(subjects, "shadow-x-inbox-value") || !slices.Contains(subjects, "inbox-value") {
		t.Fatalf("subjects %v: want the real and the shadow inbox's", subjects)
	}
	shadow.term(t)
	dev.term(t)

	// The second start restores the saved schemas (it used to panic:
	// "schema id N already seeded").
	dev = startProc(t, "dev-again", devArgs, logDir, 3)
	waitReadyz(t, dev, devHTTP, 60*time.Second)
	if got := registrySubjects(t, registry); !slices.Equal(got, subjects) {
		t.Errorf("after the restart the registry has subjects %v, want %v", got, subjects)
	}
	dev.term(t)
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReadyz polls p's /readyz on port until it answers 200; it fails if p
// exits first or limit passes.
func waitReadyz(t *testing.T, p *proc, port int, limit time.Duration) {
	t.Helper()
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		if err := p.exited(); err != nil {
			dumpTail(t, p.log, 30)
			t.Fatalf("waiting for /readyz: %v", err)
		}
		if resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			dumpTail(t, p.log, 30)
			t.Fatalf("%s: /readyz not 200 after %s", p.name, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func registrySubjects(t *testing.T, registry string) []string {
	t.Helper()
	resp, err := http.Get(registry + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var subjects []string
	if err := json.NewDecoder(resp.Body).Decode(&subjects); err != nil {
		t.Fatal(err)
	}
	slices.Sort(subjects)
	return subjects
}

// TestDevWithoutPipeline: `sponsor dev --no-pipeline` runs the embedded
// Kafka and registry with the topics and schemas and no pipeline, so that
// an SRE rehearses on a laptop what production needs: start `sponsor run`
// against it, stop it, and replay with --yes (refused while the group has
// members, hence impossible against plain `sponsor dev`).
func TestDevWithoutPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary; skipped in -short mode")
	}
	data, logDir := t.TempDir(), t.TempDir()
	kafkaPort, registryPort, runHTTP := freePort(t), freePort(t), freePort(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	registry := fmt.Sprintf("http://127.0.0.1:%d", registryPort)
	dev := startProc(t, "dev", []string{"dev", "--no-pipeline", "--data", data, "--kafka-port", fmt.Sprint(kafkaPort),
		"--registry-port", fmt.Sprint(registryPort), "--partitions", "2"}, logDir, 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(dev.log)
		if strings.Contains(string(b), "sponsor run --brokers "+brokers) {
			break
		}
		if err := dev.exited(); err != nil || time.Now().After(deadline) {
			dumpTail(t, dev.log, 30)
			t.Fatalf("sponsor dev --no-pipeline did not print how to run the pipeline: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if subjects := registrySubjects(t, registry); !slices.Contains(subjects, "interactions-value") || !slices.Contains(subjects, "inbox-value") {
		t.Errorf("subjects %v: want the schemas registered", subjects)
	}

	run := startProc(t, "run", []string{"run", "--brokers", brokers, "--registry", registry, "--state-dir", filepath.Join(data, "state"),
		"--http", fmt.Sprintf("127.0.0.1:%d", runHTTP)}, logDir, 2)
	waitReadyz(t, run, runHTTP, 60*time.Second)
	run.term(t)
	// The group keeps a static member for the session timeout (none here:
	// not --static), so --yes may take a moment to be accepted.
	for {
		out, _, err := stateCLI(t, "replay", "--to-start", "--yes", "--brokers", brokers, "--registry", registry)
		if err == nil && strings.Contains(out, "Applied") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay --yes after the pipeline stopped: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	dev.term(t)
}
