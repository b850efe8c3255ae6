// Package loadgen writes records into the pipeline's input topics from the
// outside, as a platform team would, and generates the synthetic workload
// it writes.
//
// The workload ([Generator]) is a realistic synthetic stream of
// interactions and campaigns for demos, tests and benchmarks: users with a
// few businesses each, businesses with a long tail of popularity, a mix of
// interaction kinds dominated by messages, occasional blocks and opt-outs,
// and campaigns with audiences. It is deterministic: the same [Workload]
// (seed included) gives the same sequence of records.
//
// Writing is either a given batch of interactions and campaigns in one
// Kafka transaction ([Produce], behind `sponsor produce`) or the live
// feeder, the workload at a chosen count or rate ([Gen], behind
// `sponsor gen`, and [Feed], the demo of `sponsor dev`). Records are encoded
// in the Confluent wire format through the schema registry and keyed as the
// contract says: interactions by user_id, campaigns by campaign_id.
//
// It is a client of the pipeline's topics, not part of the pipeline: it
// never creates topics and refuses to write when they are missing.
package loadgen
