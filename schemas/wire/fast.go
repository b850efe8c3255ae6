package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sponsored/sponsor/schemas"
)

// The fast paths of the records the pipeline handles once per event: the
// interactions it reads (the steady state) and the inbox records a fan-out
// writes (one per delivery), with its decisions records (one per chunk, a
// string and a byte per candidate). twmb/avro decodes and encodes through
// reflection, at about 350 ns per interaction read and 170-400 ns per inbox
// record written (BenchmarkInteraction, BenchmarkInbox); these paths do the
// same work in a fraction of it. They are written by hand because the library
// has no generated or schema-specialized codec, and they are kept honest by
// the library itself:
//   - the interaction decoder only takes records written with our own schema
//     and gives up (ok false) on anything it does not read exactly as Avro
//     does, leaving the record, and the error it may deserve, to the library;
//     FuzzFastInteraction checks that whatever it accepts, the library reads
//     the same;
//   - the templates encode the parts of a record that are the same for every
//     candidate of a campaign with the library, once, and check their first
//     output against the library's encoding of the same record.

// decodeOwnInteraction decodes the Avro body of an interaction written with
// our own schema. ok is false when the body is not exactly one well-formed
// record with an in-range kind; the caller then decodes it with the library.
// The three strings share one allocation, as the library's do.
func decodeOwnInteraction(body []byte) (v schemas.Interaction, ok bool) {
	all := string(body) // the strings below are slices of this one copy
	off := 0
	str := func() string {
		n, w := uvarlong(body[off:])
		if w == 0 || n&1 != 0 || n>>1 > uint64(len(body)-off-w) {
			ok = false
			return ""
		}
		s := all[off+w : off+w+int(n>>1)]
		off += w + int(n>>1)
		return s
	}
	ok = true
	v.EventID, v.UserID, v.BusinessID = str(), str(), str()
	if !ok {
		return schemas.Interaction{}, false
	}
	// The kind is an Avro int, of which the library reads at most 5 bytes;
	// each kind's index takes one.
	if off == len(body) || body[off]&1 != 0 || body[off]>>1 >= byte(len(schemas.InteractionKinds)) {
		return schemas.Interaction{}, false
	}
	v.Kind = schemas.InteractionKind(body[off] >> 1)
	off++
	at, w := uvarlong(body[off:])
	if w == 0 || off+w != len(body) {
		return schemas.Interaction{}, false
	}
	v.OccurredAt = time.UnixMilli(int64(at>>1) ^ -int64(at&1)).UTC()
	return v, true
}

// uvarlong reads the unsigned varint of an Avro long (before its zigzag
// decoding) from the start of b and returns it with its length in bytes, or
// width 0 if b does not start with one of at most 9 bytes (63 bits, which
// every value of our records fits; longer ones go to the library).
func uvarlong(b []byte) (u uint64, width int) {
	for i := 0; i < len(b) && i < 9; i++ {
		u |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return u, i + 1
		}
	}
	return 0, 0
}

// appendString appends s in Avro's binary encoding: its length as a zigzag
// varint, then its bytes.
func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s))<<1)
	return append(dst, s...)
}

// InboxTemplate encodes the inbox records of one campaign: they differ only in
// their first two fields, delivery_id and user_id, so the rest (business,
// campaign, sent_at, message) is encoded once. Make one with
// [Serde.InboxTemplate]; it is safe for concurrent use.
type InboxTemplate struct {
	header [headerLen]byte
	tail   []byte // the Avro encoding of the fields after user_id
}

// InboxTemplate returns the template of the inbox records that are m but for
// their DeliveryID and UserID (m's are ignored).
func (s *Serde) InboxTemplate(m *schemas.InboxMessage) (*InboxTemplate, error) {
	probe := *m
	probe.DeliveryID, probe.UserID = "", ""
	whole, err := s.AppendInbox(nil, &probe)
	if err != nil {
		return nil, err
	}
	t := &InboxTemplate{}
	tail, err := templateTail(t.header[:], whole, 2)
	if err != nil {
		return nil, fmt.Errorf("schemas: inbox template: %w", err)
	}
	t.tail = tail
	probe.DeliveryID, probe.UserID = "d", "u"
	if err := checkTemplate(&probe, s.AppendInbox, t.Append(nil, "d", "u")); err != nil {
		return nil, err
	}
	return t, nil
}

// Append appends the wire-format inbox record of the template's campaign for
// deliveryID and userID to dst and returns the extended slice.
func (t *InboxTemplate) Append(dst []byte, deliveryID, userID string) []byte {
	dst = append(dst, t.header[:]...)
	dst = appendString(dst, deliveryID)
	dst = appendString(dst, userID)
	return append(dst, t.tail...)
}

// DecisionChunkTemplate encodes the decision records of one campaign's
// fan-out on one partition, one per chunk: the fields before chunk_after
// (business, campaign, fire time, partition) are encoded once, with the
// library, and each chunk appends its cursor, its end and its candidates.
// Make one with [Serde.DecisionChunkTemplate]; it is safe for concurrent use.
type DecisionChunkTemplate struct {
	head []byte // the wire-format header and the Avro encoding of the fields before chunk_after
}

// DecisionChunkTemplate returns the template of the chunk records that are c
// but for their After, Done, Users and Outcomes (c's are ignored).
func (s *Serde) DecisionChunkTemplate(c *schemas.DecisionChunk) (*DecisionChunkTemplate, error) {
	probe := *c
	probe.After, probe.Done, probe.Users, probe.Outcomes = "", false, nil, nil
	whole, err := s.AppendDecisionChunk(nil, &probe)
	if err != nil {
		return nil, err
	}
	// The last four fields, empty: "", false, [], [] (one zero byte each).
	if len(whole) < headerLen+4 || !bytes.Equal(whole[len(whole)-4:], make([]byte, 4)) {
		return nil, fmt.Errorf("schemas: decision chunk template: the record does not end with chunk_after, fanout_done, users and outcomes")
	}
	t := &DecisionChunkTemplate{head: bytes.Clone(whole[:len(whole)-4])}
	probe.After, probe.Done = "u0", true
	probe.Users, probe.Outcomes = []string{"u1", "u2"}, []schemas.Outcome{schemas.Delivered, schemas.FrequencyUser}
	got, err := t.Append(nil, probe.After, probe.Done, probe.Users, probe.Outcomes)
	if err != nil {
		return nil, err
	}
	if err := checkTemplate(&probe, s.AppendDecisionChunk, got); err != nil {
		return nil, err
	}
	return t, nil
}

// Append appends the wire-format record of one chunk of the template's
// campaign to dst and returns the extended slice: the chunk began after the
// cursor after, went over users (ascending, with outcomes[i] the outcome of
// users[i]) and finished the fan-out when done. users and outcomes must be
// as long as each other and not empty; otherwise Append returns dst and an
// error.
func (t *DecisionChunkTemplate) Append(dst []byte, after string, done bool, users []string, outcomes []schemas.Outcome) ([]byte, error) {
	if len(users) == 0 || len(users) != len(outcomes) {
		return dst, fmt.Errorf("schemas: decision chunk of %d users and %d outcomes", len(users), len(outcomes))
	}
	for i, o := range outcomes {
		if o < 0 || int(o) >= len(schemas.Outcomes) {
			return dst, fmt.Errorf("schemas: decision chunk: outcome %d of user %q out of range", o, users[i])
		}
	}
	dst = append(dst, t.head...)
	dst = appendString(dst, after)
	if done {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	// Each array as one block: its count, its items, and the empty block
	// that ends it.
	dst = binary.AppendUvarint(dst, uint64(len(users))<<1)
	for _, u := range users {
		dst = appendString(dst, u)
	}
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(len(outcomes))<<1)
	for _, o := range outcomes {
		dst = append(dst, byte(o)<<1) // an enum index below 64 is one byte
	}
	return append(dst, 0), nil
}

// templateTail copies whole's wire-format header into header and returns the
// Avro body after its first n fields, which must be empty strings (one zero
// byte each).
func templateTail(header, whole []byte, n int) ([]byte, error) {
	if len(whole) < headerLen+n || !bytes.Equal(whole[headerLen:headerLen+n], make([]byte, n)) {
		return nil, fmt.Errorf("the record does not start with %d empty strings", n)
	}
	copy(header, whole[:headerLen])
	return bytes.Clone(whole[headerLen+n:]), nil
}

// checkTemplate compares a template's encoding of v with the library's: they
// differ only if the schema's first fields are no longer the two strings the
// templates fill in.
func checkTemplate[T any](v *T, encode func([]byte, *T) ([]byte, error), got []byte) error {
	want, err := encode(nil, v)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("schemas: template encodes % x, the library % x", got, want)
	}
	return nil
}
