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
	// Frontier is the firing-order key of the last campaign that started
	// firing (in order by stream time or the wall clock, or late at
	// once). A campaign the task has read (below Campaigns) whose key is
	// at or below it and that has no record in the store is done: its
	// fan-out finished, or it expired, or it was a duplicate.
	Frontier Key
	// Replay is, per campaigns partition, the lowest offset whose record
	// the task may still need to rebuild its campaigns on restore: the
	// first record of a campaign it still remembers and has no kept
	// record of (pending, or done but not past its expiry, for dedup).
	// A restore reads the campaigns topic from Replay up to Campaigns
	// (Partition.Replay). Missing (a metadata written before it): equal
	// to Campaigns, since every campaign then had a record.
	Replay []int64
}
