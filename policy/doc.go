// Package policy is the pure, deterministic core of the sponsored-messages
// pipeline: what a partition decides. It has two layers.
//
// The rules: the functions and types that decide about one value at a
// time. Policy.Decide decides whether a campaign reaches a user, given the
// contact between the user and the business (Contact), the user's recent
// deliveries (Recipient), the campaign and the event time it fires as of;
// Policy.Observe folds an interaction into a contact; Admit applies a
// campaign record to a task's knowledge of the campaign (Progress); the
// expiry judgements (ContactExpired, Forgotten, Forgettable) say what may
// be forgotten.
//
// The partition: Partition, the state machine of one partition built on
// the rules. It keeps the stream time and the campaigns, admits campaign
// records, fires campaigns by stream time and by the wall clock, fans them
// out in chunks with a cursor, applies interactions (lateness, erasure)
// and sweeps what expired. It reads and writes the partition's state
// through a Store (the runtime's is state.Batch, over Pebble) and reports
// its decisions through an Output (the runtime turns them into inbox and
// decision records and metrics). The datadriven stories in testdata/ run
// exactly this code.
//
// The package does no I/O, reads no clock and keeps no globals (the wall
// clock is an argument), so a replay of the same inputs gives the same
// outputs; the runtime in package pipeline reads the records, calls the
// Partition and writes what it decided.
//
// All times are event times in milliseconds since the Unix epoch (Millis).
package policy
