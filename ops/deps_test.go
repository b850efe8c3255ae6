// Package ops_test holds the test that keeps the operator tools (ops/...)
// and the load generator (loadgen/...) out of the runtime: they are tools
// that talk to Kafka the way any client does, and must keep working, and
// building, whatever the pipeline's internals become.
package ops_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/sponsored/sponsor"

// forbidden are the packages no tool may import, directly (tests
// included) or, for the module's own packages, through another package of
// the module: the runtime, and Pebble (a tool reads the changelog through
// package state's codecs, never a store).
var forbidden = []string{
	module + "/pipeline",
	"github.com/cockroachdb/pebble",
}

// transitive are the forbidden packages that may not come in through
// another package of the module either. Pebble may (package state's codecs
// share a package with its store), the runtime may not.
var transitive = []string{module + "/pipeline"}

func TestToolsDoNotImportTheRuntime(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, top := range []string{"ops", "loadgen"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", top, err)
		}
	}
	deps := &graph{root: root, imports: map[string][]string{}}
	checked := 0
	for _, dir := range dirs {
		imps, err := deps.dirImports(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(imps) == 0 {
			continue
		}
		checked++
		rel, _ := filepath.Rel(root, dir)
		self := module + "/" + filepath.ToSlash(rel)
		for _, imp := range imps {
			if isForbidden(imp, forbidden) {
				t.Errorf("%s imports %s: a tool must not import the runtime or Pebble", self, imp)
				continue
			}
			if chain := deps.reaches(imp, transitive, map[string]bool{}); chain != nil {
				t.Errorf("%s imports %s, which reaches %s: a tool must not depend on the runtime", self, imp, strings.Join(chain, " -> "))
			}
		}
	}
	if checked < 4 {
		t.Fatalf("checked %d packages under ops/ and loadgen/; the walk is broken", checked)
	}
}

func isForbidden(imp string, list []string) bool {
	for _, f := range list {
		if imp == f || strings.HasPrefix(imp, f+"/") {
			return true
		}
	}
	return false
}

// graph reads the imports of the module's packages from their sources.
type graph struct {
	root    string
	imports map[string][]string // by import path: non-test imports
}

// dirImports returns the imports of the Go files in dir, with its test
// files when tests is set, sorted and without duplicates.
func (g *graph) dirImports(dir string, tests bool) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		if !tests && strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			return nil, err
		}
		for _, is := range af.Imports {
			p, err := strconv.Unquote(is.Path.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// reaches returns the chain from pkg to a package of targets through the
// module's own packages (non-test imports), or nil.
func (g *graph) reaches(pkg string, targets []string, seen map[string]bool) []string {
	if isForbidden(pkg, targets) {
		return []string{pkg}
	}
	if seen[pkg] || (pkg != module && !strings.HasPrefix(pkg, module+"/")) {
		return nil
	}
	seen[pkg] = true
	imps, ok := g.imports[pkg]
	if !ok {
		dir := filepath.Join(g.root, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")))
		if _, err := os.Stat(dir); err == nil {
			imps, _ = g.dirImports(dir, false)
		}
		g.imports[pkg] = imps
	}
	for _, imp := range imps {
		if chain := g.reaches(imp, targets, seen); chain != nil {
			return append([]string{pkg}, chain...)
		}
	}
	return nil
}
