package policy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPurity proves the policy core is pure, in the manner of tailscale's
// deptest: its dependency graph has no Kafka client, no Pebble, no network,
// no OS and no randomness, and its source reads no clock.
func TestPurity(t *testing.T) {
	t.Run("deps", func(t *testing.T) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Skip("go command not found:", err)
		}
		out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}} {{join .Imports \" \"}}", ".").Output()
		if err != nil {
			t.Fatalf("go list -deps .: %v", err)
		}
		// imports maps each dependency to its direct imports, to show
		// through which chain a forbidden package came in.
		imports := map[string][]string{}
		standard := map[string]bool{}
		var deps []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			deps = append(deps, f[0])
			standard[f[0]] = f[1] == "true"
			imports[f[0]] = f[2:]
		}
		if len(deps) == 0 {
			t.Fatal("go list -deps . listed nothing")
		}
		self := deps[len(deps)-1] // go list -deps lists the package itself last

		// Forbidden anywhere in the graph.
		forbiddenPrefixes := []string{"github.com/twmb/franz-go", "github.com/cockroachdb/pebble"}
		forbidden := map[string]bool{"net": true, "net/http": true, "os/exec": true, "math/rand": true, "math/rand/v2": true}
		for _, d := range deps {
			bad := forbidden[d]
			for _, p := range forbiddenPrefixes {
				bad = bad || d == p || strings.HasPrefix(d, p+"/")
			}
			if bad {
				t.Errorf("policy depends on %s (via %s); the policy core must stay pure", d, strings.Join(importChain(imports, self, d), " -> "))
			}
		}
		// os and syscall: the standard library's fmt and crypto/sha256
		// import os for their own internals (printing to os.Stdout, FIPS
		// self-tests), so they are in the graph of any package that
		// formats an error or computes a delivery id. What must not
		// happen is that a package outside the standard library (ours or
		// a third party's) imports them: that would be code that can do
		// I/O on the policy's behalf.
		for _, d := range deps {
			if standard[d] {
				continue
			}
			for _, imp := range imports[d] {
				if imp == "os" || imp == "syscall" {
					t.Errorf("%s imports %s (chain %s); the policy core must stay pure", d, imp, strings.Join(importChain(imports, self, d), " -> "))
				}
			}
		}
	})
	t.Run("clock", func(t *testing.T) {
		files, err := filepath.Glob("*.go")
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		checked := 0
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseFile(fset, name, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			// The local names of packages time and fmt in this file.
			timeName, fmtName := localName(f, "time"), localName(f, "fmt")
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == timeName {
					switch sel.Sel.Name {
					case "Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker":
						t.Errorf("%s: uses time.%s; time must be a parameter of the policy core", fset.Position(sel.Pos()), sel.Sel.Name)
					}
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == fmtName && strings.HasPrefix(sel.Sel.Name, "Print") {
					t.Errorf("%s: uses fmt.%s, which writes to os.Stdout", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				return true
			})
		}
		if checked == 0 {
			t.Fatal("no non-test source files found to check")
		}
	})
}

// importChain returns a shortest import path from one package to another.
func importChain(imports map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{from, "?", to}
}

// localName returns the name under which file f imports path, "" if it
// does not.
func localName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if imp.Path.Value == strconv.Quote(path) {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return path[strings.LastIndex(path, "/")+1:]
		}
	}
	return ""
}
