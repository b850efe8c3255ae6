// Package wire reads and writes the pipeline's records (package schemas) in
// the Confluent schema-registry wire format.
//
// [Serde] reads and writes record values in the Confluent schema-registry
// wire format: a magic byte 0, the 4-byte big-endian id of the writer schema,
// then the Avro binary encoding. Subjects follow the TopicNameStrategy
// (topic+"-value"). [New] registers our schemas, and every value the
// Serde writes carries the id of ours.
//
// Decoding supports schema evolution: the record is decoded with the writer
// schema named by its id (fetched from the registry once and cached), resolved
// against our reader schema by Avro's rules: fields are matched by name,
// fields the writer lacks take the reader's default, fields only the writer
// has are skipped. A writer schema that is not a compatible version of the
// same record (another record's id, an enum with symbols we do not know, a
// missing field without default) is rejected for every record that names it.
//
// Bad input never panics. Everything that makes a record unacceptable is a
// [*DecodeError] whose Reason is meant for the dead-letter header; a failure
// to reach the registry is a plain error, because retrying may succeed.
//
// The package does not judge the domain rules (a campaign that expires before
// it is sent, an interaction whose key is not its user): that is the
// pipeline's job.
package wire
