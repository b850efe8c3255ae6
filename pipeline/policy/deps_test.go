package policy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
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
		out, err := exec.Command(goBin, "list", "-deps", ".").Output()
		if err != nil {
			t.Fatalf("go list -deps .: %v", err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatal("go list -deps . listed nothing")
		}
		forbiddenPrefixes := []string{"github.com/twmb/franz-go", "github.com/cockroachdb/pebble"}
		forbidden := map[string]bool{"net": true, "net/http": true, "os": true, "os/exec": true, "math/rand": true, "math/rand/v2": true}
		for _, d := range deps {
			bad := forbidden[d]
			for _, p := range forbiddenPrefixes {
				bad = bad || d == p || strings.HasPrefix(d, p+"/")
			}
			if bad {
				t.Errorf("policy depends on %s; the policy core must stay pure", d)
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
			timeName := "" // the local name of package time in this file
			for _, imp := range f.Imports {
				if imp.Path.Value == `"time"` {
					timeName = "time"
					if imp.Name != nil {
						timeName = imp.Name.Name
					}
				}
			}
			if timeName == "" {
				continue
			}
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
				return true
			})
		}
		if checked == 0 {
			t.Fatal("no non-test source files found to check")
		}
	})
}
