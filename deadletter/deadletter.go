// Package deadletter is the dead-letter contract: the headers a dead letter
// carries, the reasons a record is rejected for, building a dead letter from
// the record it rejects, and reading one back.
//
// A dead letter keeps the rejected record's key and value bytes untouched.
// Its headers follow Kafka Connect's convention (__connect.errors.*), so
// that existing tooling can read them, plus a machine-readable reason code
// (sponsor.errors.reason) and, for a record found on the wrong partition,
// the partition it belongs to (sponsor.errors.expected.partition).
//
// The pipeline builds dead letters with [New]; the operator tools (tail,
// redrive) read them with [Parse]. The package knows nothing of either, so a
// tool reads dead letters without importing the runtime.
package deadletter

import (
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The headers of a dead letter.
const (
	// HeaderTopic is the topic the rejected record was read from.
	HeaderTopic = "__connect.errors.topic"
	// HeaderPartition is the partition it was read from.
	HeaderPartition = "__connect.errors.partition"
	// HeaderOffset is its offset there.
	HeaderOffset = "__connect.errors.offset"
	// HeaderClass is "sponsor." followed by the reason, in the place of
	// Kafka Connect's exception class name.
	HeaderClass = "__connect.errors.exception.class.name"
	// HeaderMessage is the full error, or the reason when there is none.
	HeaderMessage = "__connect.errors.exception.message"
	// HeaderReason is the reason code, one of the Reason constants.
	HeaderReason = "sponsor.errors.reason"
	// HeaderExpectedPartition is on wrong-partition dead letters only: the
	// partition of the source topic the record's key maps to, where it
	// belongs (HeaderPartition is the one it was found on).
	HeaderExpectedPartition = "sponsor.errors.expected.partition"
)

// The prefixes of every dead-letter header.
const (
	connectPrefix = "__connect.errors."
	sponsorPrefix = "sponsor.errors."
)

// IsHeader reports whether a header with this key is one a dead letter adds
// (__connect.errors.*, sponsor.errors.*): what a redrive does not send back.
func IsHeader(key string) bool {
	return strings.HasPrefix(key, connectPrefix) || strings.HasPrefix(key, sponsorPrefix)
}

// Reason says why a record was rejected: the value of HeaderReason, and the
// reason label of the sponsor_deadletters_total metric.
type Reason string

// The reasons of the decoder (a record whose value bytes are not one of the
// topic's records).
const (
	// ReasonNotWireFormat: the value is empty, shorter than the 5-byte
	// header, or does not start with the magic byte 0.
	ReasonNotWireFormat Reason = "not-wire-format"
	// ReasonUnknownSchema: the registry has no schema with the header's id.
	ReasonUnknownSchema Reason = "unknown-schema-id"
	// ReasonIncompatibleSchema: the writer schema is not a version of the
	// record we read (another subject's schema, not Avro, unparsable) or
	// cannot be resolved to our reader schema by Avro's rules.
	ReasonIncompatibleSchema Reason = "incompatible-schema"
	// ReasonMalformed: the bytes do not decode with the writer schema, or
	// bytes are left over after the record.
	ReasonMalformed Reason = "malformed-avro"
	// ReasonInvalidValue: the record decodes but holds a value our types
	// cannot take, such as an audience rule whose kind is not user-initiated
	// or whose within_days is negative.
	ReasonInvalidValue Reason = "invalid-value"
)

// The reasons of the pipeline's own checks of a decoded record.
const (
	// ReasonEmptyUserID: an interaction without a user.
	ReasonEmptyUserID Reason = "empty-user-id"
	// ReasonEmptyBusinessID: an interaction of a kind that needs a business
	// without one, or a campaign without one.
	ReasonEmptyBusinessID Reason = "empty-business-id"
	// ReasonEmptyCampaignID: a campaign without an id.
	ReasonEmptyCampaignID Reason = "empty-campaign-id"
	// ReasonMisroutedKey: the record's key is not its user (interactions)
	// or its campaign id (campaigns).
	ReasonMisroutedKey Reason = "misrouted-key"
	// ReasonCampaignExpiresBeforeSend: a LAUNCH whose expiry is before its
	// send time.
	ReasonCampaignExpiresBeforeSend Reason = "campaign-expires-before-send"
	// ReasonClockSkew: an interaction whose occurred_at is further ahead
	// of its record's timestamp or of the wall clock than the pipeline's
	// MaxClockSkew allows (a producer with a wrong clock): it would move
	// the partition's stream time, and fire campaigns, too early. A
	// redrive once its time has come applies it.
	ReasonClockSkew Reason = "clock-skew"
	// ReasonWrongPartition: an interaction whose key maps to another
	// partition under the pipeline's partitioner: its producer uses
	// another partitioner, or wrote to a partition by hand. Processing it
	// would give its user state in a task that does not own them (a
	// second contact, a missed opt-out). The dead letter carries
	// HeaderExpectedPartition; a redrive sends it there.
	ReasonWrongPartition Reason = "wrong-partition"
)

// Reasons returns every reason a dead letter can carry, the decoder's first.
func Reasons() []Reason {
	return []Reason{
		ReasonNotWireFormat, ReasonUnknownSchema, ReasonIncompatibleSchema,
		ReasonMalformed, ReasonInvalidValue,
		ReasonEmptyUserID, ReasonEmptyBusinessID, ReasonEmptyCampaignID,
		ReasonMisroutedKey, ReasonCampaignExpiresBeforeSend, ReasonWrongPartition, ReasonClockSkew,
	}
}

// New returns the dead letter of src for the dead-letter topic topic: src's
// key and value untouched, with headers naming where src came from and why
// it was rejected. err is the full error; nil leaves the reason as the
// message.
func New(topic string, src *kgo.Record, reason Reason, err error) *kgo.Record {
	msg := string(reason)
	if err != nil {
		msg = err.Error()
	}
	return &kgo.Record{
		Topic: topic,
		Key:   src.Key,
		Value: src.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderTopic, Value: []byte(src.Topic)},
			{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
			{Key: HeaderOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
			{Key: HeaderClass, Value: []byte("sponsor." + string(reason))},
			{Key: HeaderMessage, Value: []byte(msg)},
			{Key: HeaderReason, Value: []byte(reason)},
		},
	}
}

// NewWrongPartition returns the dead letter of src, found on a partition
// its key does not map to, with HeaderExpectedPartition set to expected.
func NewWrongPartition(topic string, src *kgo.Record, expected int32, err error) *kgo.Record {
	dl := New(topic, src, ReasonWrongPartition, err)
	dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: HeaderExpectedPartition, Value: strconv.AppendInt(nil, int64(expected), 10)})
	return dl
}

// Letter is a dead letter's headers, read back.
type Letter struct {
	// Topic is the source topic (HeaderTopic); empty when missing.
	Topic string
	// Partition is the partition of the source topic it was read from
	// (HeaderPartition); -1 when missing or not a partition.
	Partition int32
	// Offset is its offset there (HeaderOffset); -1 when missing or not an
	// offset.
	Offset int64
	// Reason is HeaderReason; empty when missing.
	Reason Reason
	// Message is HeaderMessage.
	Message string
	// Expected is HeaderExpectedPartition, the partition a wrong-partition
	// dead letter belongs to; -1 when missing or not a partition.
	Expected int32
}

// Parse reads the dead-letter headers of r. Headers that are missing or
// do not parse leave their field at its "missing" value; Parse never fails,
// so that a tool can count and show what it cannot use.
func Parse(r *kgo.Record) Letter {
	l := Letter{Partition: -1, Offset: -1, Expected: -1}
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderTopic:
			l.Topic = string(h.Value)
		case HeaderReason:
			l.Reason = Reason(h.Value)
		case HeaderMessage:
			l.Message = string(h.Value)
		case HeaderPartition:
			l.Partition = partition(h.Value)
		case HeaderExpectedPartition:
			l.Expected = partition(h.Value)
		case HeaderOffset:
			if o, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && o >= 0 {
				l.Offset = o
			}
		}
	}
	return l
}

// partition parses a partition header value; -1 when it is not one.
func partition(b []byte) int32 {
	p, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil || p < 0 {
		return -1
	}
	return int32(p)
}
