// Package schemas holds the pipeline's record contract: four Avro schemas,
// embedded from the .avsc files next to this file, Interaction (interactions
// topic), Campaign (campaigns topic), InboxMessage (inbox topic) and Decision
// (decisions topic, the audit trail), and the
// Go types that mirror them; the enums' Go values are the Avro symbols'
// ordinals. It has no dependencies, so the pure policy core can use the
// types; the wire-format serde is in package wire (schemas/wire).
package schemas
