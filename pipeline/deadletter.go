package pipeline

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sponsored/sponsor/schemas/wire"
)

// Dead-letter headers follow Kafka Connect's convention (__connect.errors.*),
// so existing tooling can read them, plus a machine-readable reason code.
const (
	HeaderTopic     = "__connect.errors.topic"
	HeaderPartition = "__connect.errors.partition"
	HeaderOffset    = "__connect.errors.offset"
	HeaderClass     = "__connect.errors.exception.class.name"
	HeaderMessage   = "__connect.errors.exception.message"
	HeaderReason    = "sponsor.errors.reason"
	// HeaderExpectedPartition is on wrong-partition dead letters only: the
	// partition of the source topic the record's key maps to, where it
	// belongs (HeaderPartition is the one it was found on).
	HeaderExpectedPartition = "sponsor.errors.expected.partition"
)

// Dead-letter reasons of the pipeline's own checks; the decoder's are the
// wire.Reason* constants.
const (
	ReasonEmptyUserID     = "empty-user-id"
	ReasonEmptyBusinessID = "empty-business-id"
	ReasonEmptyCampaignID = "empty-campaign-id"
	// ReasonMisroutedKey: the record's key is not its user (interactions)
	// or its campaign id (campaigns).
	ReasonMisroutedKey = "misrouted-key"
	// ReasonCampaignExpiresBeforeSend: a LAUNCH whose expiry is before its
	// send time.
	ReasonCampaignExpiresBeforeSend = "campaign-expires-before-send"
	// ReasonClockSkew: an interaction whose occurred_at is further ahead
	// of its record's timestamp or of the wall clock than
	// Config.MaxClockSkew allows (a producer with a wrong clock): it would
	// move the partition's stream time, and fire campaigns, too early. A
	// redrive once its time has come applies it.
	ReasonClockSkew = "clock-skew"
	// ReasonWrongPartition: an interaction whose key maps to another
	// partition under the configured partitioner (Config.Partitioner): its
	// producer uses another partitioner, or wrote to a partition by hand.
	// Processing it would give its user state in a task that does not own
	// them (a second contact, a missed opt-out). The dead letter carries
	// HeaderExpectedPartition; a redrive sends it there.
	ReasonWrongPartition = "wrong-partition"
)

// DeadLetterReasons returns every reason a dead letter can carry in its
// sponsor.errors.reason header (and in the reason label of
// sponsor_deadletters_total).
func DeadLetterReasons() []string {
	return []string{
		wire.ReasonNotWireFormat, wire.ReasonUnknownSchema, wire.ReasonIncompatibleSchema,
		wire.ReasonMalformed, wire.ReasonInvalidValue,
		ReasonEmptyUserID, ReasonEmptyBusinessID, ReasonEmptyCampaignID,
		ReasonMisroutedKey, ReasonCampaignExpiresBeforeSend, ReasonWrongPartition, ReasonClockSkew,
	}
}

// deadLetter returns the dead-letter record of src: its key and value
// untouched, with headers naming where it came from and why it was rejected.
// reason is a short code (e.g. "misrouted-key"), err the full error.
func deadLetter(topic string, src *kgo.Record, reason string, err error) *kgo.Record {
	msg := reason
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
			{Key: HeaderClass, Value: []byte("sponsor." + reason)},
			{Key: HeaderMessage, Value: []byte(msg)},
			{Key: HeaderReason, Value: []byte(reason)},
		},
	}
}
