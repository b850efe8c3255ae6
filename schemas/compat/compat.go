// Package compat tells whether a new version of an input schema (an
// Interaction or a Campaign) can be deployed without breaking the pipeline
// or the data already written, by Avro's schema resolution rules
// (github.com/twmb/avro's implementation, not the registry's):
//
//   - FORWARD: records written with the new schema can be read with the
//     current one. This is what the pipeline does: it decodes every writer
//     version with its own (embedded) schema, so a producer that upgrades
//     first must not break it.
//   - BACKWARD: records written with the current schema can be read with
//     the new one, so that a consumer upgraded to the new schema still reads
//     the topic's history (and a later pipeline built on it can replay).
//
// A schema that passes both (FULL compatibility) is safe to deploy in either
// order. The usual safe change is adding a field with a default, e.g.
// {"name": "x", "type": ["null", "string"], "default": null}.
//
// It does no I/O: the caller gives both schemas as text.
package compat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/avro"
)

// Direction says which way a check reads records.
type Direction string

const (
	// Forward: the current schema reads records written with the new one.
	Forward Direction = "FORWARD"
	// Backward: the new schema reads records written with the current one.
	Backward Direction = "BACKWARD"
)

// Problem is one incompatibility between the new and the current schema.
type Problem struct {
	Direction Direction
	// Path is the dotted path of the field or type, e.g. "Campaign.message.text".
	Path string
	// Detail is the resolution rule that fails, in Avro's words.
	Detail string
	// Explain says in plain words what the change breaks and what to do.
	Explain string
}

// String formats p as DIRECTION PATH: EXPLAIN (DETAIL).
func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s (%s)", p.Direction, p.Path, p.Explain, p.Detail)
}

// Check compares newText, the proposed schema, with current, the one in use,
// both Avro schema JSON, and returns every incompatibility found, none if the
// new schema is fully (forward and backward) compatible. The error is for a
// schema that does not parse.
//
// Avro's check stops at the first problem; to list them all, Check also
// compares the records' top-level fields one by one, and falls back to the
// first problem of the whole schema when that is not possible (a field
// using a type defined by another).
func Check(newText, current string) ([]Problem, error) {
	ns, err := avro.Parse(newText)
	if err != nil {
		return nil, fmt.Errorf("new schema: %w", err)
	}
	cs, err := avro.Parse(current)
	if err != nil {
		return nil, fmt.Errorf("current schema: %w", err)
	}
	var out []Problem
	// The pipeline's serde accepts only writer versions of its own record
	// (same full name), whatever Avro's looser name matching says.
	if got, want := fullName(ns.Root()), fullName(cs.Root()); got != want {
		out = append(out, Problem{
			Direction: Forward, Path: want,
			Detail:  fmt.Sprintf("record %q is not %q", got, want),
			Explain: "the record's full name (namespace and name) changes; the pipeline rejects records of another record as incompatible-schema",
		})
	}
	out = append(out, check(Forward, ns, cs, newText, current)...)
	out = append(out, check(Backward, cs, ns, current, newText)...)
	return out, nil
}

// check returns the problems of reading records of writer with reader.
func check(dir Direction, writer, reader *avro.Schema, writerText, readerText string) []Problem {
	err := avro.CheckCompatibility(writer, reader)
	if err == nil {
		return nil
	}
	root := reader.Root().Name
	if ps := checkFields(dir, root, writerText, readerText); len(ps) > 0 {
		return ps
	}
	return []Problem{problem(dir, root, err)}
}

// checkFields checks each reader field against its writer field in a record
// of its own and returns the problems, or nil when the schemas are not
// records or a field cannot stand alone.
func checkFields(dir Direction, root, writerText, readerText string) []Problem {
	var w, r map[string]any
	if json.Unmarshal([]byte(writerText), &w) != nil || json.Unmarshal([]byte(readerText), &r) != nil {
		return nil
	}
	if w["type"] != "record" || r["type"] != "record" {
		return nil
	}
	wfields, _ := w["fields"].([]any)
	rfields, _ := r["fields"].([]any)
	var out []Problem
	for _, rf := range rfields {
		rfm, _ := rf.(map[string]any)
		if rfm == nil {
			return nil
		}
		var match []any
		if wf := writerField(rfm, wfields); wf != nil {
			match = []any{wf}
		}
		rs, err1 := parseWith(r, []any{rf})
		ws, err2 := parseWith(w, match)
		if err1 != nil || err2 != nil {
			return nil
		}
		if err := avro.CheckCompatibility(ws, rs); err != nil {
			out = append(out, problem(dir, root, err))
		}
	}
	return out
}

// writerField returns the field of wfields that the reader field rf reads:
// the one of the same name, else one named by rf's aliases.
func writerField(rf map[string]any, wfields []any) any {
	names := []string{fmt.Sprint(rf["name"])}
	if as, ok := rf["aliases"].([]any); ok {
		for _, a := range as {
			names = append(names, fmt.Sprint(a))
		}
	}
	for _, n := range names {
		for _, wf := range wfields {
			if m, ok := wf.(map[string]any); ok && fmt.Sprint(m["name"]) == n {
				return wf
			}
		}
	}
	return nil
}

// parseWith parses the record schema rec with its fields replaced.
func parseWith(rec map[string]any, fields []any) (*avro.Schema, error) {
	cp := make(map[string]any, len(rec))
	for k, v := range rec {
		cp[k] = v
	}
	if fields == nil {
		fields = []any{}
	}
	cp["fields"] = fields
	b, err := json.Marshal(cp)
	if err != nil {
		return nil, err
	}
	return avro.Parse(string(b))
}

// problem turns an Avro compatibility error into a Problem with a plain
// explanation.
func problem(dir Direction, root string, err error) Problem {
	var ce *avro.CompatibilityError
	if !errors.As(err, &ce) {
		return Problem{Direction: dir, Path: root, Detail: err.Error(), Explain: "not compatible"}
	}
	field := ce.Path
	p := Problem{Direction: dir, Path: root + "." + field, Detail: ce.Detail}
	if ce.Path == "" || strings.HasPrefix(ce.Path, "(") {
		field, p.Path = root, root
	}
	switch {
	case strings.Contains(ce.Detail, "missing from writer") && dir == Backward:
		p.Explain = fmt.Sprintf("field %s is added without a default, so records already written (which lack it) cannot be read with the new schema; give it a default, e.g. [\"null\", ...] with default null", field)
	case strings.Contains(ce.Detail, "missing from writer") && dir == Forward:
		p.Explain = fmt.Sprintf("field %s is removed (or renamed) but the current schema has no default for it, so the pipeline cannot read records written with the new schema; keep the field", field)
	case strings.Contains(ce.Detail, "enum symbol") && dir == Forward:
		p.Explain = fmt.Sprintf("%s gains a symbol the current schema does not know and has no enum default for; the pipeline would reject such records", field)
	case strings.Contains(ce.Detail, "enum symbol") && dir == Backward:
		p.Explain = fmt.Sprintf("%s loses a symbol that records already written may use", field)
	case dir == Forward:
		p.Explain = fmt.Sprintf("%s changes from %s (current) to %s (new), which the current schema cannot read", field, ce.ReaderType, ce.WriterType)
	default:
		p.Explain = fmt.Sprintf("%s changes from %s (current) to %s (new), which cannot read records already written", field, ce.WriterType, ce.ReaderType)
	}
	return p
}

// fullName returns the Avro full name of a named schema node.
func fullName(n *avro.SchemaNode) string {
	if n.Name == "" || strings.Contains(n.Name, ".") || n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}

// Parse checks that text is an Avro schema whose top level is a record, and
// returns the record's full name. Its error says what is wrong and where:
// the line and column of a JSON syntax error, Avro's reason for a schema
// that is JSON but not Avro (an unknown type, a record without a name).
func Parse(text string) (string, error) {
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			line, col := position(text, se.Offset)
			return "", fmt.Errorf("not a valid Avro schema: not JSON at line %d, column %d: %v", line, col, err)
		}
		return "", fmt.Errorf("not a valid Avro schema: not JSON: %v", err)
	}
	s, err := avro.Parse(text)
	if err != nil {
		return "", fmt.Errorf("not a valid Avro schema: %w", err)
	}
	root := s.Root()
	if root.Type != "record" {
		return "", fmt.Errorf("the schema's top level is %s, not a record (want an Interaction or a Campaign record)", root.Type)
	}
	return fullName(root), nil
}

// position returns the 1-based line and column of byte offset off of text,
// as encoding/json counts it (the offset after the byte read last).
func position(text string, off int64) (line, col int) {
	off = min(max(off, 1), int64(len(text)))
	before := text[:off-1]
	line = strings.Count(before, "\n") + 1
	return line, int(off) - strings.LastIndex(before, "\n") - 1
}
