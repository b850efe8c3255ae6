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
// Key layout in Pebble, after the 4-byte big-endian partition number:
//
//	'b' uvarint(len(business)) business user -> Contact      (changelog key: 'c' uvarint(len(user)) user business)
//	'x' user                                -> policy.Erasure (changelogged)
//	'r' user                                -> Recipient    (changelogged)
//	'g' campaign                            -> Progress     (changelogged)
//	'm' name                                -> task metadata (changelogged: input offset, campaign offsets, task time)
//	'k'                                     -> checkpoint   (Pebble only: the next changelog offset to read)
//
// Every key is stored under its changelog key, except a contact: its
// changelog key puts the user first, its Pebble key the business, so that a
// fan-out reads a business's contacts, values included, in one sequential
// scan, and a contact costs one Pebble key (a separate business -> user
// index, the layout before, cost a second key per contact: a third of the
// steady state's CPU, docs/performance.md, eighth round). What the user
// order gave, the contacts of one user, an erasure now gets from a marker
// ('x', see policy.Erasure) and `sponsor state get` from a scan of the
// partition.
// A store written with the layout before is dropped partition by partition
// when opened, and rebuilt from the changelog, whose contact records did
// not change (it gains the erasure markers; an earlier version ignores
// them, so versions must not run mixed: docs/runbook.md).
//
// A Batch is the policy.Store of the partition core (policy.Partition): it
// stores and returns the values it is given and judges none of them. The
// rules that use them (which contacts an erasure marker covers, when a
// marker may go, what expired) are policy's.
//
// Values start with a version byte so the encoding can evolve: 1 for every
// value, except the contacts this version writes, which are version 2
// (AppendContact: without zero times, the later times as differences).
// DecodeContact reads both, so a changelog an earlier version wrote
// restores to the same state; an earlier version cannot read version 2.
//
// Pebble compresses the last two levels, about all of the state, with zstd
// (Snappy above them, and on the tables a restore ingests).
package state
