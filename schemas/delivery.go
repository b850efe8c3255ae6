package schemas

import (
	"crypto/sha256"
	"encoding/hex"
)

// DeliveryID returns the id of the inbox record for (campaignID, userID): the
// first 16 bytes of SHA-256 over the two ids (length-prefixed, so that no two
// pairs collide by concatenation), in hex. Consumers deduplicate on it; it is
// the same across crashes, rebalances and replays. It is part of the inbox's
// contract, so readers of the decisions topic derive it from a chunk's
// (campaign, user) pairs rather than the chunk storing it.
func DeliveryID(campaignID, userID string) string {
	h := sha256.New()
	var n [4]byte
	for _, s := range [2]string{campaignID, userID} {
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
