// Package pipeline is the runtime of the sponsored-messages stream processor:
// the consumer-group session over the interactions topic, one task per input
// partition, the campaign broadcast reader, event-time and wall-clock timers,
// the Kafka transactions that carry inbox records, changelog records, dead
// letters and consumed offsets together, and the restore of a task's state
// before it processes anything.
//
// The rules themselves live in the pure package policy; the state
// layout in package state. See docs/exactly-once.md for the protocol.
package pipeline
