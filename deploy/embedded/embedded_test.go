package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

const (
	schemaA = `{"type":"record","name":"A","fields":[{"name":"a","type":"string"}]}`
	schemaB = `{"type":"record","name":"B","fields":[{"name":"b","type":"long"}]}`
)

// TestRestartKeepsSharedSchemaIDs registers the subjects of a real run and of
// a shadow run that carry the same schemas (so the same ids, as a real
// registry gives them), stops the stack and starts it again on the same
// folder: every subject and version is back with its id. The second Start
// used to panic ("schema id N already seeded").
func TestRestartKeepsSharedSchemaIDs(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	register := []struct{ subject, schema string }{
		{"interactions-value", schemaA},
		{"inbox-value", schemaB},
		{"inbox-value", schemaA}, // a second version of a subject
		{"shadow-x-inbox-value", schemaB},
		{"shadow-x-inbox-value", schemaA},
		{"shadow-x-interactions-value", schemaA},
	}
	s := start(t, dir)
	rc := client(t, s)
	for _, r := range register {
		if _, err := rc.CreateSchema(ctx, r.subject, sr.Schema{Schema: r.schema}); err != nil {
			t.Fatalf("register %s: %v", r.subject, err)
		}
	}
	want := dump(ctx, t, rc)
	if !strings.Contains(want, "shadow-x-inbox-value v1 id 2") {
		t.Fatalf("the registry did not share the ids between subjects; the test proves nothing:\n%s", want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	for i := range 2 { // and once more: what the restarted stack saves restores too
		s = start(t, dir)
		if got := dump(ctx, t, client(t, s)); got != want {
			t.Fatalf("after restart %d the registry holds\n%s\nwant\n%s", i+1, got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
}

// TestBadSavedSchemas: a saved file the registry cannot take is an error
// that names the file and the entry, not a panic.
func TestBadSavedSchemas(t *testing.T) {
	for name, file := range map[string]string{
		"not json":           `{`,
		"dangling reference": `[{"subject":"a-value","version":1,"id":1,"schema":{"schema":"\"string\"","references":[{"name":"X","subject":"gone","version":1}]}}]`,
		"version twice": `[{"subject":"a-value","version":1,"id":1,"schema":{"schema":"\"string\""}},
			{"subject":"a-value","version":1,"id":2,"schema":{"schema":"\"long\""}}]`,
		"id with two schemas": `[{"subject":"a-value","version":1,"id":1,"schema":{"schema":"\"string\""}},
			{"subject":"b-value","version":1,"id":1,"schema":{"schema":"\"long\""}}]`,
		"version gap": `[{"subject":"a-value","version":1,"id":1,"schema":{"schema":"\"string\""}},
			{"subject":"b-value","version":1,"id":2,"schema":{"schema":"\"long\""}},
			{"subject":"b-value","version":3,"id":1,"schema":{"schema":"\"string\""}}]`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "schemas.json"), []byte(file), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Start(Options{Dir: dir})
			if err == nil {
				s.Close()
				t.Fatalf("Start accepted %s", file)
			}
			if !strings.Contains(err.Error(), "schemas.json") {
				t.Errorf("error %q does not name the file", err)
			}
			t.Log(err)
		})
	}
}

func start(t *testing.T, dir string) *Stack {
	t.Helper()
	s, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, s *Stack) *sr.Client {
	t.Helper()
	rc, err := sr.NewClient(sr.URLs(s.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// dump lists every subject version with its id, one a line.
func dump(ctx context.Context, t *testing.T, rc *sr.Client) string {
	t.Helper()
	var b strings.Builder
	subjects, err := rc.Subjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subjects {
		versions, err := rc.SubjectVersions(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range versions {
			ss, err := rc.SchemaByVersion(ctx, sub, v)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s v%d id %d %s\n", sub, v, ss.ID, ss.Schema.Schema)
		}
	}
	return b.String()
}
