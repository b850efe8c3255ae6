package main

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"

	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cmdFunc returns the command of the table that words name ("state",
// "rebuild"), as a function of the arguments after them: dispatch with
// words first.
func cmdFunc(words ...string) func(context.Context, []string, stdio) error {
	return func(ctx context.Context, args []string, std stdio) error {
		return dispatch(ctx, append(slices.Clone(words), args...), std)
	}
}

// configPrint runs `sponsor config` with args ("print", then run flags),
// writing the configuration to out.
func configPrint(args []string, out io.Writer) error {
	return dispatch(context.Background(), append([]string{"config"}, args...), stdio{in: strings.NewReader(""), out: out, err: io.Discard})
}

// parseRun parses args as `sponsor run` does.
func parseRun(args []string) (*flagSet, *pipelineFlags, error) {
	cmd, _, _ := lookup([]string{"run"})
	fs := newFlagSet(cmd, args, io.Discard)
	f, err := parseRunFlags(fs)
	return fs, f, err
}

// TestEveryCommandRejectsAStrayArgument checks that every command of the
// table refuses one positional argument more than it takes, before it
// connects to anything: exit status 2, its usage on stderr.
func TestEveryCommandRejectsAStrayArgument(t *testing.T) {
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			args := strings.Fields(cmd.name)
			switch cmd.name {
			case "produce":
				args = append(args, "interactions", "file.jsonl")
			case "schemas check":
				args = append(args, "new.avsc")
			}
			args = append(args, "stray")
			var out, errb bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing may wait: the argument is refused first
			err := dispatch(ctx, args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
			ee, ok := errors.AsType[*exitError](err)
			if !ok || ee.code != 2 || !strings.Contains(err.Error(), `"stray"`) {
				t.Fatalf("sponsor %s: error %v, want exit status 2 naming \"stray\"", strings.Join(args, " "), err)
			}
			if !strings.Contains(errb.String(), cmd.usage) || !strings.Contains(errb.String(), "  -") {
				t.Errorf("sponsor %s: stderr does not show the usage and the flags:\n%s", strings.Join(args, " "), errb.String())
			}
		})
	}
}

// TestSharedFlagsDefinedOnce checks that each flag several commands share
// is defined in one place of the package's code (sharedflags.go), not once
// per command.
func TestSharedFlagsDefinedOnce(t *testing.T) {
	shared := []string{"group", "shadow", "topic-prefix", "brokers", "registry", "partitioner", "state-dir"}
	found := map[string][]string{}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			// A flag is defined by a call fs.XxxVar(p, "name", ...).
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Var") {
				return true
			}
			lit, ok := call.Args[1].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			name, _ := strconv.Unquote(lit.Value)
			found[name] = append(found[name], fset.Position(lit.Pos()).String())
			return true
		})
	}
	for _, name := range shared {
		if len(found[name]) != 1 {
			t.Errorf("--%s is defined %d times, want once (in sharedflags.go): %v", name, len(found[name]), found[name])
		}
	}
	if len(found["group"]) == 1 && !strings.HasPrefix(found["group"][0], "sharedflags.go") {
		t.Errorf("--group is defined in %s, want sharedflags.go", found["group"][0])
	}
}

// TestHelpPrintsTheTable checks that help, no command and an unknown
// command print the command table (every command in it), and that a
// group without its command lists the group's commands.
func TestHelpPrintsTheTable(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int // 0: no error
		toStdout bool
	}{
		{[]string{"help"}, 0, true},
		{[]string{"--help"}, 0, true},
		{nil, 2, false},
		{[]string{"bogus"}, 2, false},
	} {
		var out, errb bytes.Buffer
		err := dispatch(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
		code := 0
		if err != nil {
			code = 1
			if ee, ok := errors.AsType[*exitError](err); ok {
				code = ee.code
			}
		}
		if code != tc.code {
			t.Errorf("sponsor %v: exit status %d (%v), want %d", tc.args, code, err, tc.code)
		}
		table := errb.String()
		if tc.toStdout {
			table = out.String()
		}
		for _, cmd := range commands {
			if !strings.Contains(table, "sponsor "+cmd.name+" "+cmd.synopsis+"\n      "+cmd.summary+"\n") {
				t.Errorf("sponsor %v: the table lacks %q:\n%s", tc.args, cmd.name, table)
			}
		}
	}
	var errb bytes.Buffer
	err := dispatch(context.Background(), []string{"state"}, stdio{in: strings.NewReader(""), out: io.Discard, err: &errb})
	if err == nil || err.Error() != "want get or rebuild" || !strings.Contains(errb.String(), "sponsor state rebuild ") || strings.Contains(errb.String(), "sponsor run ") {
		t.Errorf("sponsor state: %v, stderr:\n%s\nwant: want get or rebuild, and the state commands only", err, errb.String())
	}
}
