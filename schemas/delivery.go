package schemas

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// DeliveryID returns the id of the inbox record for (campaignID, userID): the
// first 16 bytes of SHA-256 over the two ids (length-prefixed, so that no two
// pairs collide by concatenation), in hex. Consumers deduplicate on it; it is
// the same across crashes, rebalances and replays. It is part of the inbox's
// contract, so readers of the decisions topic derive it from a chunk's
// (campaign, user) pairs rather than the chunk storing it.
func DeliveryID(campaignID, userID string) string {
	var buf [DeliveryIDLen]byte
	return string(AppendDeliveryID(buf[:0], campaignID, userID))
}

// DeliveryIDLen is the length of a delivery id: 16 bytes in hex.
const DeliveryIDLen = 32

// AppendDeliveryID appends DeliveryID(campaignID, userID) to dst and returns
// the extended slice. For ids of up to 120 bytes together it allocates
// nothing: a fan-out computes one per delivery.
func AppendDeliveryID(dst []byte, campaignID, userID string) []byte {
	var stack [128]byte
	in := stack[:0]
	if n := 8 + len(campaignID) + len(userID); n > len(stack) {
		in = make([]byte, 0, n)
	}
	// The hash's input: each id after its length, 4 bytes big-endian.
	in = binary.BigEndian.AppendUint32(in, uint32(len(campaignID)))
	in = append(in, campaignID...)
	in = binary.BigEndian.AppendUint32(in, uint32(len(userID)))
	in = append(in, userID...)
	sum := sha256.Sum256(in)
	return hex.AppendEncode(dst, sum[:16])
}
