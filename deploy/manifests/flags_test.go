package manifests

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// root is the module's root, relative to this package.
const root = "../.."

// pendingFlags are flags the deployment files already set (as SPONSOR_*
// variables from a Secret) but the pipeline does not have yet: SASL and
// registry credentials. An unknown SPONSOR_* variable is ignored by the
// binary, so setting them early is harmless; the tests log them.
var pendingFlags = map[string]bool{
	"sasl-user":         true,
	"sasl-password":     true,
	"registry-user":     true,
	"registry-password": true,
}

var (
	flagsOnce sync.Once
	flagsSet  map[string]bool // flag name -> is a bool flag
	flagsErr  string
)

// runFlags returns the flags of `sponsor run`, read from its --help output
// (the binary is built once per test run): name -> whether it is a bool.
func runFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		bin := filepath.Join(t.TempDir(), "sponsor")
		// t.TempDir is removed when the first test ends; the flags stay.
		build := exec.Command("go", "build", "-o", bin, "./cmd/sponsor")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			flagsErr = "go build ./cmd/sponsor: " + err.Error() + "\n" + string(out)
			return
		}
		// --help exits with status 0 or 2 depending on the flag package's
		// mood; only the text matters.
		out, _ := exec.Command(bin, "run", "--help").CombinedOutput()
		flagsSet = map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "  -") {
				continue
			}
			f := strings.Fields(strings.TrimPrefix(line, "  -"))
			flagsSet[f[0]] = len(f) == 1 // no type word: a bool flag
		}
		if len(flagsSet) == 0 {
			flagsErr = "sponsor run --help listed no flags:\n" + string(out)
		}
	})
	if flagsErr != "" {
		t.Fatal(flagsErr)
	}
	return flagsSet
}

// envFlag returns the flag a SPONSOR_* variable sets ("SPONSOR_STATE_DIR"
// -> "state-dir"), and false for any other variable.
func envFlag(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "SPONSOR_")
	if !ok {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-")), true
}

// checkEnv fails t for every SPONSOR_* variable of env that names no flag
// of `sponsor run` (pending ones are logged).
func checkEnv(t *testing.T, where string, env []string) {
	t.Helper()
	flags := runFlags(t)
	for _, name := range env {
		fl, ok := envFlag(name)
		if !ok {
			continue
		}
		if _, exists := flags[fl]; exists {
			continue
		}
		if pendingFlags[fl] {
			t.Logf("%s: %s sets --%s, which the pipeline does not have yet (pending)", where, name, fl)
			continue
		}
		t.Errorf("%s: %s sets --%s, but `sponsor run --help` has no such flag", where, name, fl)
	}
}

// checkArgs fails t for every --flag of args that `sponsor run` lacks, and
// returns the flags' values (a bool flag given alone: "true").
func checkArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	flags := runFlags(t)
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		isBool, ok := flags[name]
		if !ok {
			t.Errorf("%s: argument %q: `sponsor run --help` has no flag --%s", where, a, name)
			continue
		}
		if !hasVal {
			if isBool {
				val = "true"
			} else if i+1 < len(args) {
				i++
				val = args[i]
			} else {
				t.Errorf("%s: flag --%s has no value", where, name)
			}
		}
		vals[name] = val
	}
	return vals
}
