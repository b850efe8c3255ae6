package policy

// Meta is a partition's bookkeeping, kept in its state so that it moves
// with the partition and commits atomically with the outputs. The runtime
// owns the offsets (Input, Campaigns); the partition core owns the times
// (Time, Rounds).
type Meta struct {
	// Input is the next interactions offset the task will process: every
	// record below it has been applied. Records below it are skipped, so an
	// offset reset over processed data sends nothing twice. -1 before the
	// first record.
	Input int64
	// Campaigns is the next campaigns offset the task will read, per
	// campaigns partition.
	Campaigns []int64
	// Time is the partition's stream time: the largest event time it has
	// processed, or raised to by a campaign's firing (Policy.AfterFire).
	Time Millis
	// Rounds counts the expiry sweep's complete rounds over the partition's
	// contacts. An erasure marker may go once a whole round began after it
	// (Erasure.Round).
	Rounds uint64
}
