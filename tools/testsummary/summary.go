package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type skip struct {
	pkg, test, reason string
}

// summarize reads the events of r and writes the summary to w. It reports
// whether every package passed.
func summarize(r io.Reader, w io.Writer) (bool, error) {
	type key struct{ pkg, test string }
	output := map[key][]string{}
	var skips []skip
	ok := true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (go vet's or the build's own output): show it.
			fmt.Fprintln(w, sc.Text())
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			output[k] = append(output[k], e.Output)
		case "skip":
			if e.Test != "" {
				skips = append(skips, skip{e.Package, e.Test, reason(output[k])})
			} else if lines := output[k]; len(lines) > 0 {
				fmt.Fprint(w, lines[len(lines)-1]) // "?   pkg [no test files]"
			}
			delete(output, k)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, k)
		case "fail":
			ok = false
			fmt.Fprint(w, strings.Join(output[k], ""))
			if e.Test == "" && !strings.Contains(strings.Join(output[k], ""), "FAIL\t"+e.Package) {
				fmt.Fprintf(w, "FAIL\t%s\n", e.Package)
			}
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	if len(skips) == 0 {
		return ok, nil
	}
	// Subtests skipped with their parent are one skip.
	slices.SortFunc(skips, func(a, b skip) int { return strings.Compare(a.pkg+" "+a.test, b.pkg+" "+b.test) })
	fmt.Fprintf(w, "\nskipped %d test(s):\n", len(skips))
	var runs []string
	for _, s := range skips {
		fmt.Fprintf(w, "  %s %s: %s\n", s.pkg, s.test, s.reason)
		for _, h := range how {
			if strings.Contains(s.reason, h.mentions) && !slices.Contains(runs, h.run) {
				runs = append(runs, h.run)
				break
			}
		}
	}
	if len(runs) > 0 {
		fmt.Fprintln(w, "to run them:")
		for _, r := range runs {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
	return ok, nil
}

// reason returns a skipped test's message from its output lines: those
// between "=== RUN" and "--- SKIP", trimmed of the file:line prefix.
func reason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		if _, rest, found := strings.Cut(t, ": "); found && strings.Contains(t[:len(t)-len(rest)], ".go:") {
			t = rest
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " ")
}
