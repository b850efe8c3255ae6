// Package jsonl converts the records of the interactions, campaigns and inbox
// topics to and from JSON, one record per line: the shape `sponsor produce`
// reads and `sponsor tail` prints, so that the output of one is input of the
// other.
//
// The shape follows the Avro schemas in package schemas: one JSON object per
// record, the Avro field names as keys, enums as their symbols, nested
// records as objects and arrays as arrays. Timestamps (timestamp-millis) are
// read as an RFC 3339 string ("2025-06-01T12:00:00Z",
// "2025-06-01T14:00:00.250+02:00") or as an integer of milliseconds since
// the Unix epoch, and written as RFC 3339 in UTC with milliseconds:
//
//	{"event_id":"ev-1","user_id":"user-1","business_id":"biz-1","kind":"USER_MESSAGE","occurred_at":"2025-06-01T12:00:00.000Z"}
//	{"campaign_id":"camp-1","business_id":"biz-1","action":"LAUNCH","send_at":"2025-06-01T13:00:00Z","expires_at":1748869200000,
//	 "audience":[{"kind":"BOT_CTA_CLICK","within_days":7}],"message":{"text":"Hi","cta_label":"Shop","cta_url":"https://example.com"}}
//
// Reading is strict, so a test event that the pipeline would dead-letter is
// caught before it is produced: unknown fields, missing fields, wrong types,
// unknown symbols, timestamps finer than a millisecond and the pipeline's own
// value rules (an empty user_id, business_id or campaign_id, an expires_at
// before send_at, a non-user-initiated audience kind) are errors that name
// the field. Only "audience" (empty: every contact) and the message's
// "cta_label" and "cta_url" (null) may be left out; "business_id" may be
// left out (empty) for USER_ERASED. A CANCEL needs only "campaign_id",
// "business_id" and "action": the pipeline reads nothing else of it, and
// what the schema requires is filled (send_at and expires_at at the Unix
// epoch, an empty message):
//
//	{"campaign_id":"camp-1","business_id":"biz-1","action":"CANCEL"}
//
// It does no I/O beyond the reader it is given and knows nothing of Kafka.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// Error is one problem with one line of input: a field that is missing,
// unknown or holds a bad value, or a line that is not a JSON object (Field
// empty).
type Error struct {
	// Name is the input's name (a file name, "-" for stdin); empty when the
	// record was not read from a named input.
	Name string
	// Line is the 1-based line number; 0 when the record was not read
	// line by line.
	Line int
	// Field is the dotted path of the field, e.g. "message.text" or
	// "audience[1].kind"; empty when the line as a whole is bad.
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error formats e as NAME:LINE: field FIELD: REASON.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Name != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.Name, e.Line)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	case e.Name != "":
		fmt.Fprintf(&b, "%s: ", e.Name)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", e.Field)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem found in an input, in line order, at least one.
type Errors []*Error

// Error formats the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// MaxLine is the longest line Read accepts, in bytes.
const MaxLine = 1 << 20

// ReadInteractions reads JSON lines of interactions from r, named name in
// errors. Blank lines are skipped. It validates every line: if any is bad,
// it returns no records and an [Errors] listing every problem of every bad
// line; other errors are read errors of r.
func ReadInteractions(r io.Reader, name string) ([]schemas.Interaction, error) {
	return read(r, name, UnmarshalInteraction)
}

// ReadCampaigns reads JSON lines of campaigns from r, as [ReadInteractions].
func ReadCampaigns(r io.Reader, name string) ([]schemas.Campaign, error) {
	return read(r, name, UnmarshalCampaign)
}

// ReadInbox reads JSON lines of inbox messages from r, as [ReadInteractions].
func ReadInbox(r io.Reader, name string) ([]schemas.InboxMessage, error) {
	return read(r, name, UnmarshalInbox)
}

func read[T any](r io.Reader, name string, unmarshal func([]byte) (T, error)) ([]T, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	var (
		out  []T
		bad  Errors
		line int
	)
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		v, err := unmarshal(b)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) {
				es = Errors{{Reason: err.Error()}}
			}
			for _, e := range es {
				e.Name, e.Line = name, line
			}
			bad = append(bad, es...)
			continue
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			bad = append(bad, &Error{Name: name, Line: line + 1, Reason: fmt.Sprintf("line longer than %d bytes", MaxLine)})
			return nil, bad
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}

// UnmarshalInteraction parses one interaction. Its error is an [Errors]
// naming each bad field.
func UnmarshalInteraction(b []byte) (schemas.Interaction, error) {
	o, err := newObject(b, "")
	if err != nil {
		return schemas.Interaction{}, err
	}
	var v schemas.Interaction
	v.EventID = o.str("event_id", true)
	v.UserID = o.str("user_id", true)
	kind, kindOK := o.enum("kind", schemas.InteractionKinds[:])
	v.Kind = schemas.InteractionKind(kind)
	if kindOK && v.Kind == schemas.UserErased {
		v.BusinessID = o.optStr("business_id")
		if v.BusinessID != "" {
			o.fail("business_id", "must be empty for USER_ERASED, got %q", v.BusinessID)
		}
	} else {
		v.BusinessID = o.str("business_id", kindOK)
	}
	v.OccurredAt = o.timestamp("occurred_at")
	return v, o.finish()
}

// UnmarshalCampaign parses one campaign. Its error is an [Errors] naming
// each bad field.
func UnmarshalCampaign(b []byte) (schemas.Campaign, error) {
	o, err := newObject(b, "")
	if err != nil {
		return schemas.Campaign{}, err
	}
	var v schemas.Campaign
	v.CampaignID = o.str("campaign_id", true)
	v.BusinessID = o.str("business_id", true)
	action, _ := o.enum("action", actions)
	v.Action = schemas.CampaignAction(action)
	if v.Action == schemas.Cancel {
		// A CANCEL names a campaign and its business; the pipeline reads
		// nothing else of it. What the schema still requires is filled:
		// times at the Unix epoch, an empty message.
		v.SendAt, v.ExpiresAt = time.UnixMilli(0).UTC(), time.UnixMilli(0).UTC()
		if o.present("send_at") {
			v.SendAt = o.timestamp("send_at")
		}
		if o.present("expires_at") {
			v.ExpiresAt = o.timestamp("expires_at")
		}
		if o.present("message") {
			v.Message = o.message("message")
		}
		o.array("audience")
		return v, o.finish()
	}
	v.SendAt = o.timestamp("send_at")
	v.ExpiresAt = o.timestamp("expires_at")
	if !v.SendAt.IsZero() && !v.ExpiresAt.IsZero() && v.ExpiresAt.Before(v.SendAt) {
		o.fail("expires_at", "%s is before send_at %s (the pipeline rejects the campaign)", format(v.ExpiresAt), format(v.SendAt))
	}
	for i, raw := range o.array("audience") {
		r, ok := o.object(raw, fmt.Sprintf("audience[%d]", i))
		if !ok {
			continue
		}
		kind, _ := r.enum("kind", schemas.InteractionKinds[:schemas.BotCTAClick+1])
		days := r.days("within_days")
		r.finish()
		v.Audience = append(v.Audience, schemas.AudienceRule{Kind: schemas.InteractionKind(kind), WithinDays: days})
	}
	v.Message = o.message("message")
	return v, o.finish()
}

// UnmarshalInbox parses one inbox message. Its error is an [Errors] naming
// each bad field.
func UnmarshalInbox(b []byte) (schemas.InboxMessage, error) {
	o, err := newObject(b, "")
	if err != nil {
		return schemas.InboxMessage{}, err
	}
	var v schemas.InboxMessage
	v.DeliveryID = o.str("delivery_id", true)
	v.UserID = o.str("user_id", true)
	v.BusinessID = o.str("business_id", true)
	v.CampaignID = o.str("campaign_id", true)
	v.SentAt = o.timestamp("sent_at")
	v.Message = o.message("message")
	return v, o.finish()
}

var actions = []string{schemas.Launch.String(), schemas.Cancel.String()}

// object reads the fields of one JSON object, recording every problem in
// errs (shared with the objects nested in it).
type object struct {
	path   string // dotted path of this object, "" at the top
	fields map[string]json.RawMessage
	order  []string // keys in input order, for stable unknown-field errors
	used   map[string]bool
	errs   *Errors
}

func newObject(b []byte, path string) (*object, error) {
	errs := &Errors{}
	o := &object{errs: errs}
	if !o.parse(b, path) {
		return nil, *errs
	}
	return o, nil
}

// parse fills o from b; on failure it records why and returns false.
func (o *object) parse(b []byte, path string) bool {
	o.path, o.used = path, map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		o.failLine(path, "not JSON: %v", err)
		return false
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		o.failLine(path, "want a JSON object, got %s", describe(b))
		return false
	}
	o.fields = map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			o.failLine(path, "not JSON: %v", err)
			return false
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			o.failLine(path, "not JSON: %v", err)
			return false
		}
		if _, dup := o.fields[key]; dup {
			o.fail(key, "appears twice")
			continue
		}
		o.fields[key] = raw
		o.order = append(o.order, key)
	}
	if _, err := dec.Token(); err != nil {
		o.failLine(path, "not JSON: %v", err)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		o.failLine(path, "trailing data after the JSON object")
		return false
	}
	return true
}

// object returns the nested object raw at path.
func (o *object) object(raw json.RawMessage, path string) (*object, bool) {
	n := &object{errs: o.errs}
	if !n.parse(raw, o.join(path)) {
		return nil, false
	}
	return n, true
}

func (o *object) join(name string) string {
	if o.path == "" {
		return name
	}
	if strings.HasPrefix(name, "[") {
		return o.path + name
	}
	return o.path + "." + name
}

func (o *object) fail(name, format string, args ...any) {
	*o.errs = append(*o.errs, &Error{Field: o.join(name), Reason: fmt.Sprintf(format, args...)})
}

// failLine records a problem with the object at path as a whole.
func (o *object) failLine(path, format string, args ...any) {
	*o.errs = append(*o.errs, &Error{Field: path, Reason: fmt.Sprintf(format, args...)})
}

// get returns the raw value of a field that must be present and not null.
func (o *object) get(name string) (json.RawMessage, bool) {
	o.used[name] = true
	raw, ok := o.fields[name]
	if !ok {
		o.fail(name, "missing")
		return nil, false
	}
	if string(raw) == "null" {
		o.fail(name, "null, want a value")
		return nil, false
	}
	return raw, true
}

// str returns a string field; nonEmpty rejects "".
func (o *object) str(name string, nonEmpty bool) string {
	raw, ok := o.get(name)
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		o.fail(name, "want a string, got %s", describe(raw))
		return ""
	}
	if nonEmpty && s == "" {
		o.fail(name, "empty (the pipeline rejects the record)")
	}
	return s
}

// present reports whether the object has field name; a missing one counts
// as read.
func (o *object) present(name string) bool {
	_, ok := o.fields[name]
	if !ok {
		o.used[name] = true
	}
	return ok
}

// optStr returns a string field that may be missing (empty).
func (o *object) optStr(name string) string {
	if _, ok := o.fields[name]; !ok {
		o.used[name] = true
		return ""
	}
	return o.str(name, false)
}

// nullable returns a ["null","string"] field: missing or null is nil.
func (o *object) nullable(name string) *string {
	o.used[name] = true
	raw, ok := o.fields[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		o.fail(name, "want a string or null, got %s", describe(raw))
		return nil
	}
	return &s
}

// enum returns the index of an enum field's symbol among symbols.
func (o *object) enum(name string, symbols []string) (int, bool) {
	raw, ok := o.get(name)
	if !ok {
		return 0, false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		o.fail(name, "want one of %s, got %s", strings.Join(symbols, ", "), describe(raw))
		return 0, false
	}
	i := slices.Index(symbols, s)
	if i < 0 {
		o.fail(name, "unknown symbol %q, want one of %s", s, strings.Join(symbols, ", "))
		return 0, false
	}
	return i, true
}

// days returns a within_days field: an int from 0 (ever) up.
func (o *object) days(name string) int32 {
	raw, ok := o.get(name)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(string(raw), 10, 32)
	if err != nil {
		o.fail(name, "want an integer from 0 (ever) to %d, got %s", math.MaxInt32, describe(raw))
		return 0
	}
	if n < 0 {
		o.fail(name, "negative: %d (0 means ever)", n)
	}
	return int32(n)
}

// timestamp returns a timestamp-millis field, given as an RFC 3339 string or
// as integer milliseconds since the Unix epoch.
func (o *object) timestamp(name string) time.Time {
	raw, ok := o.get(name)
	if !ok {
		return time.Time{}
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			o.fail(name, "want an RFC 3339 time or epoch milliseconds, got %s", describe(raw))
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			o.fail(name, "want an RFC 3339 time (2025-06-01T12:00:00Z) or epoch milliseconds, got %q", s)
			return time.Time{}
		}
		if !t.Equal(t.Truncate(time.Millisecond)) {
			o.fail(name, "%q is finer than a millisecond (timestamp-millis)", s)
			return time.Time{}
		}
		if t.Before(time.Unix(0, 0)) {
			o.fail(name, "%q is before the Unix epoch (1970-01-01T00:00:00Z)", s)
			return time.Time{}
		}
		if ms := t.UnixMilli(); time.UnixMilli(ms).Equal(t) {
			return time.UnixMilli(ms).UTC()
		}
		o.fail(name, "%q is out of range", s)
		return time.Time{}
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		o.fail(name, "want an RFC 3339 time or integer epoch milliseconds, got %s", describe(raw))
		return time.Time{}
	}
	if ms < 0 {
		o.fail(name, "%d is before the Unix epoch (1970-01-01T00:00:00Z)", ms)
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// array returns the elements of an array field that may be missing (empty).
func (o *object) array(name string) []json.RawMessage {
	o.used[name] = true
	raw, ok := o.fields[name]
	if !ok {
		return nil
	}
	var elems []json.RawMessage
	if string(raw) == "null" || json.Unmarshal(raw, &elems) != nil {
		o.fail(name, "want an array, got %s", describe(raw))
		return nil
	}
	return elems
}

// message returns a Message record field.
func (o *object) message(name string) schemas.Message {
	raw, ok := o.get(name)
	if !ok {
		return schemas.Message{}
	}
	m, ok := o.object(raw, name)
	if !ok {
		return schemas.Message{}
	}
	v := schemas.Message{Text: m.str("text", false), CTALabel: m.nullable("cta_label"), CTAURL: m.nullable("cta_url")}
	m.finish()
	return v
}

// finish records the fields nobody asked for as unknown and returns the
// errors of the whole record (nil if none).
func (o *object) finish() error {
	for _, k := range o.order {
		if !o.used[k] {
			o.fail(k, "unknown field")
		}
	}
	if len(*o.errs) == 0 {
		return nil
	}
	return *o.errs
}

// describe names the JSON type of raw, for errors.
func describe(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if len(raw) > 40 {
		raw = append(raw[:40:40], "..."...)
	}
	return string(raw)
}

// Time formats timestamps as written: RFC 3339, UTC, milliseconds.
const Time = "2006-01-02T15:04:05.000Z07:00"

func format(t time.Time) string { return t.UTC().Format(Time) }

// The JSON shapes, field order as in the Avro schemas.
type (
	interactionJSON struct {
		EventID    string `json:"event_id"`
		UserID     string `json:"user_id"`
		BusinessID string `json:"business_id"`
		Kind       string `json:"kind"`
		OccurredAt string `json:"occurred_at"`
	}
	ruleJSON struct {
		Kind       string `json:"kind"`
		WithinDays int32  `json:"within_days"`
	}
	messageJSON struct {
		Text     string  `json:"text"`
		CTALabel *string `json:"cta_label"`
		CTAURL   *string `json:"cta_url"`
	}
	campaignJSON struct {
		CampaignID string      `json:"campaign_id"`
		BusinessID string      `json:"business_id"`
		Action     string      `json:"action"`
		SendAt     string      `json:"send_at"`
		ExpiresAt  string      `json:"expires_at"`
		Audience   []ruleJSON  `json:"audience"`
		Message    messageJSON `json:"message"`
	}
	inboxJSON struct {
		DeliveryID string      `json:"delivery_id"`
		UserID     string      `json:"user_id"`
		BusinessID string      `json:"business_id"`
		CampaignID string      `json:"campaign_id"`
		SentAt     string      `json:"sent_at"`
		Message    messageJSON `json:"message"`
	}
)

// MarshalInteraction returns v as one line of JSON (without the newline).
func MarshalInteraction(v *schemas.Interaction) ([]byte, error) {
	return json.Marshal(interactionJSON{
		EventID: v.EventID, UserID: v.UserID, BusinessID: v.BusinessID,
		Kind: v.Kind.String(), OccurredAt: format(v.OccurredAt),
	})
}

// MarshalCampaign returns v as one line of JSON (without the newline). The
// audience is always written, [] when empty.
func MarshalCampaign(v *schemas.Campaign) ([]byte, error) {
	c := campaignJSON{
		CampaignID: v.CampaignID, BusinessID: v.BusinessID, Action: v.Action.String(),
		SendAt: format(v.SendAt), ExpiresAt: format(v.ExpiresAt),
		Audience: make([]ruleJSON, len(v.Audience)),
		Message:  messageJSON(v.Message),
	}
	for i, r := range v.Audience {
		c.Audience[i] = ruleJSON{Kind: r.Kind.String(), WithinDays: r.WithinDays}
	}
	return json.Marshal(c)
}

// MarshalInbox returns v as one line of JSON (without the newline).
func MarshalInbox(v *schemas.InboxMessage) ([]byte, error) {
	return json.Marshal(inboxJSON{
		DeliveryID: v.DeliveryID, UserID: v.UserID, BusinessID: v.BusinessID, CampaignID: v.CampaignID,
		SentAt: format(v.SentAt), Message: messageJSON(v.Message),
	})
}
