package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// valueVersion is the first byte of every encoded value.
const valueVersion = 1

// ErrCorrupt is returned (wrapped) when a stored value cannot be decoded.
var ErrCorrupt = errors.New("state: corrupt value")

// encoder appends varint-encoded fields to a buffer.
type encoder struct{ b []byte }

func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) byte(v byte)   { e.b = append(e.b, v) }
func (e *encoder) str(s string)  { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) optStr(s *string) {
	if s == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.str(*s)
}

// decoder reads what encoder wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", ErrCorrupt, what)
	}
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) str() string {
	n := d.uint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) optStr() *string {
	if d.byte() == 0 || d.err != nil {
		return nil
	}
	s := d.str()
	return &s
}

func (d *decoder) version(what string) {
	if v := d.byte(); d.err == nil && v != valueVersion {
		d.err = fmt.Errorf("%w: %s has version %d, want %d", ErrCorrupt, what, v, valueVersion)
	}
}

func (d *decoder) done(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes after %s", ErrCorrupt, len(d.b), what)
	}
	return d.err
}

const (
	flagBlocked  = 1 << 0
	flagOptedOut = 1 << 1
)

// contactVersion is the version byte of a contact value as AppendContact
// writes it. Version 1, which DecodeContact still reads (a changelog or a
// store written before keeps it until the key is written again), was:
//
//	1 flags varint(Last[0]) varint(Last[1]) varint(Last[2]) varint(BlockAt) varint(OptAt) varint(LastSent) [recent]
//
// every time in full, a zero as one byte. Version 2 leaves the zeros out
// and writes the times after the first as differences from it (usually
// days or months: four or five bytes instead of six):
//
//	2 flags|present<<2 varint(first present time) varint(time - first)... [recent]
//
// where bit i of present says whether time i (Last[0], Last[1], Last[2],
// BlockAt, OptAt, LastSent) is not zero. A contact with one user message
// takes 8 bytes instead of 13, one with a delivery a day later too 12
// instead of 18 (docs/performance.md, the bytes round). [recent] is the
// same in both:
// the recent interactions (policy.Contact.Recent), present only when there
// are any, as uvarint(count) and, for each, its kind byte and varint(time).
const contactVersion = 2

// contactTimes returns pointers to c's times in the order of version 2's
// presence bits.
func contactTimes(c *policy.Contact) [6]*policy.Millis {
	return [6]*policy.Millis{&c.Last[0], &c.Last[1], &c.Last[2], &c.BlockAt, &c.OptAt, &c.LastSent}
}

// AppendContact appends the encoding of c to dst.
func AppendContact(dst []byte, c *policy.Contact) []byte {
	e := encoder{dst}
	e.byte(contactVersion)
	var flags byte
	if c.Blocked {
		flags |= flagBlocked
	}
	if c.OptedOut {
		flags |= flagOptedOut
	}
	times := contactTimes(c)
	for i, t := range times {
		if *t != 0 {
			flags |= 1 << (2 + i)
		}
	}
	e.byte(flags)
	var first policy.Millis
	seen := false
	for _, t := range times {
		switch {
		case *t == 0:
		case !seen:
			first, seen = *t, true
			e.int(first)
		default:
			e.int(*t - first)
		}
	}
	// The recent interactions (policy.Contact.Recent) follow only when
	// there are any: a contact without them, the only kind with no grace,
	// is encoded as before they existed.
	if len(c.Recent) > 0 {
		e.uint(uint64(len(c.Recent)))
		for _, r := range c.Recent {
			e.byte(byte(r.Kind))
			e.int(r.At)
		}
	}
	return e.b
}

// DecodeContact decodes what AppendContact wrote, in either version.
func DecodeContact(b []byte) (policy.Contact, error) {
	d := decoder{b: b}
	var c policy.Contact
	v := d.byte()
	flags := d.byte()
	c.Blocked, c.OptedOut = flags&flagBlocked != 0, flags&flagOptedOut != 0
	times := contactTimes(&c)
	switch {
	case d.err != nil:
	case v == valueVersion:
		if flags>>2 != 0 {
			return c, fmt.Errorf("%w: contact of version 1 has flags %#x", ErrCorrupt, flags)
		}
		for _, t := range times {
			*t = d.int()
		}
	case v == contactVersion:
		var first policy.Millis
		seen := false
		for i, t := range times {
			if flags&(1<<(2+i)) == 0 {
				continue
			}
			if !seen {
				first, seen = d.int(), true
				*t = first
			} else {
				*t = first + d.int()
			}
			if d.err == nil && *t == 0 {
				return policy.Contact{}, fmt.Errorf("%w: contact has a zero time marked present", ErrCorrupt)
			}
		}
	default:
		return c, fmt.Errorf("%w: contact has version %d, want %d or %d", ErrCorrupt, v, valueVersion, contactVersion)
	}
	if len(d.b) > 0 && d.err == nil {
		n := d.uint()
		if n == 0 || n > uint64(len(d.b)) {
			return policy.Contact{}, fmt.Errorf("%w: contact claims %d recent interactions", ErrCorrupt, n)
		}
		c.Recent = make([]policy.Event, 0, n)
		for range n {
			k := schemas.InteractionKind(d.byte())
			if d.err == nil && (k < 0 || int(k) >= len(schemas.InteractionKinds)) {
				return policy.Contact{}, fmt.Errorf("%w: contact has a recent interaction of kind %d", ErrCorrupt, k)
			}
			c.Recent = append(c.Recent, policy.Event{Kind: k, At: d.int()})
		}
	}
	return c, d.done("contact")
}

// AppendRecipient appends the encoding of r to dst.
func AppendRecipient(dst []byte, r *policy.Recipient) []byte {
	e := encoder{dst}
	e.byte(valueVersion)
	e.uint(uint64(len(r.Sent)))
	for _, t := range r.Sent {
		e.int(t)
	}
	return e.b
}

// DecodeRecipient decodes what AppendRecipient wrote.
func DecodeRecipient(b []byte) (policy.Recipient, error) {
	d := decoder{b: b}
	d.version("recipient")
	n := d.uint()
	if n > uint64(len(b)) {
		return policy.Recipient{}, fmt.Errorf("%w: recipient claims %d deliveries", ErrCorrupt, n)
	}
	r := policy.Recipient{Sent: make([]policy.Millis, 0, n)}
	for range n {
		r.Sent = append(r.Sent, d.int())
	}
	return r, d.done("recipient")
}

// AppendErasure appends the encoding of a user's erasure marker e to
// dst.
func AppendErasure(dst []byte, e *policy.Erasure) []byte {
	en := encoder{dst}
	en.byte(valueVersion)
	en.int(e.At)
	en.uint(e.Round)
	en.uint(uint64(len(e.Fresh)))
	for _, b := range e.Fresh {
		en.str(b)
	}
	return en.b
}

// DecodeErasure decodes what AppendErasure wrote.
func DecodeErasure(b []byte) (policy.Erasure, error) {
	d := decoder{b: b}
	d.version("erasure")
	e := policy.Erasure{At: d.int(), Round: d.uint()}
	n := d.uint()
	if n > uint64(len(b)) {
		return policy.Erasure{}, fmt.Errorf("%w: erasure claims %d businesses", ErrCorrupt, n)
	}
	for range n {
		e.Fresh = append(e.Fresh, d.str())
	}
	return e, d.done("erasure")
}

// AppendProgress appends the encoding of p to dst.
func AppendProgress(dst []byte, p *policy.Progress) []byte {
	e := encoder{dst}
	e.byte(valueVersion)
	e.byte(byte(p.Status))
	e.str(p.Campaign.ID)
	e.str(p.Campaign.Business)
	e.int(p.Campaign.SendAt)
	e.int(p.Campaign.ExpiresAt)
	e.uint(uint64(len(p.Campaign.Audience)))
	for _, r := range p.Campaign.Audience {
		e.byte(byte(r.Kind))
		e.int(int64(r.WithinDays))
	}
	e.str(p.Message.Text)
	e.optStr(p.Message.CTALabel)
	e.optStr(p.Message.CTAURL)
	e.int(p.FireAt)
	e.str(p.Cursor)
	// Since the campaign state follows the campaigns topic: where the
	// campaign's first record is and whether the record is kept.
	e.int(int64(p.Source.Partition))
	e.int(p.Source.Offset)
	e.int(p.Source.Time)
	var keep byte
	if p.Keep {
		keep = 1
	}
	e.byte(keep)
	return e.b
}

// DecodeProgress decodes what AppendProgress wrote.
func DecodeProgress(b []byte) (policy.Progress, error) {
	d := decoder{b: b}
	var p policy.Progress
	d.version("campaign progress")
	p.Status = policy.Status(d.byte())
	p.Campaign.ID = d.str()
	p.Campaign.Business = d.str()
	p.Campaign.SendAt = d.int()
	p.Campaign.ExpiresAt = d.int()
	n := d.uint()
	if n > uint64(len(b)) {
		return p, fmt.Errorf("%w: campaign claims %d audience rules", ErrCorrupt, n)
	}
	for range n {
		kind := schemas.InteractionKind(d.byte())
		p.Campaign.Audience = append(p.Campaign.Audience, schemas.AudienceRule{Kind: kind, WithinDays: int32(d.int())})
	}
	p.Message.Text = d.str()
	p.Message.CTALabel = d.optStr()
	p.Message.CTAURL = d.optStr()
	p.FireAt = d.int()
	p.Cursor = d.str()
	if len(d.b) > 0 && d.err == nil {
		p.Source.Partition = int32(d.int())
		p.Source.Offset = d.int()
		p.Source.Time = d.int()
		p.Keep = d.byte() != 0
	} else {
		// Written when every campaign had a record until forgotten:
		// nothing in the topic is known to rebuild it from.
		p.Source, p.Keep = policy.NoSource, true
	}
	return p, d.done("campaign progress")
}

// AppendMeta appends the encoding of m to dst.
func AppendMeta(dst []byte, m *policy.Meta) []byte {
	e := encoder{dst}
	e.byte(valueVersion)
	e.int(m.Input)
	e.int(m.Time)
	e.uint(uint64(len(m.Campaigns)))
	for _, o := range m.Campaigns {
		e.int(o)
	}
	e.uint(m.Rounds)
	// Since the campaign state follows the campaigns topic.
	e.int(m.Frontier.SendAt)
	e.str(m.Frontier.ID)
	e.uint(uint64(len(m.Replay)))
	for _, o := range m.Replay {
		e.int(o)
	}
	return e.b
}

// DecodeMeta decodes what AppendMeta wrote.
func DecodeMeta(b []byte) (policy.Meta, error) {
	d := decoder{b: b}
	var m policy.Meta
	d.version("task metadata")
	m.Input = d.int()
	m.Time = d.int()
	n := d.uint()
	if n > uint64(len(b)) {
		return m, fmt.Errorf("%w: metadata claims %d campaign partitions", ErrCorrupt, n)
	}
	for range n {
		m.Campaigns = append(m.Campaigns, d.int())
	}
	if len(d.b) > 0 { // written since the erasure markers
		m.Rounds = d.uint()
	}
	if len(d.b) > 0 && d.err == nil { // written since the frontier
		m.Frontier.SendAt = d.int()
		m.Frontier.ID = d.str()
		n := d.uint()
		if n > uint64(len(b)) {
			return m, fmt.Errorf("%w: metadata claims %d replay offsets", ErrCorrupt, n)
		}
		for range n {
			m.Replay = append(m.Replay, d.int())
		}
	}
	// A metadata without replay offsets (before the frontier) is read as
	// Replay = Campaigns by policy.Partition.Load.
	return m, d.done("task metadata")
}
