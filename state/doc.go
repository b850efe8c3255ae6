// Package state is the Pebble store of the pipeline's tasks: the key layout,
// the value encodings, per-partition ranges, the checkpoint and the restore
// from the changelog.
//
// Each task (one input partition) owns the keys that start with its
// partition number. Every change a task makes goes through a Batch, which
// both stages the Pebble write and records the change as a changelog record
// (the key without its partition prefix, the value or nil for a deletion).
// The runtime writes those records to the task's changelog partition in the
// same Kafka transaction as the task's outputs, and applies the Batch to
// Pebble only after the transaction committed, together with the checkpoint:
// the changelog offset the partition's state now reflects. The changelog is
// the truth; Pebble is its materialized view, so Pebble runs without a WAL.
//
// Key layout, after the 4-byte big-endian partition number:
//
//	'c' uvarint(len(user)) user business   -> Contact      (changelogged)
//	'i' uvarint(len(business)) business user -> empty        (derived from 'c'; not changelogged)
//	'r' user                                -> Recipient    (changelogged)
//	'g' campaign                            -> Progress     (changelogged)
//	'm' name                                -> task metadata (changelogged: input offset, campaign offsets, task time)
//	'k'                                     -> checkpoint   (Pebble only: the next changelog offset to read)
//
// Values start with a version byte (1) so the encoding can evolve.
package state
