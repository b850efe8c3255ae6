package loadgen

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
)

// RealisticUserID returns user i's id in the platform's shape, for
// measurements whose figures depend on the ids' length (bytes per contact
// and per delivery, issue 17): a UUID for even i, 20 base-62 characters
// for odd i, both random but fixed by i.
func RealisticUserID(i int) string {
	rng := rand.New(rand.NewPCG(uint64(i), 17))
	if i%2 == 0 {
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.Uint32())
		}
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // the RFC 4122 variant
		h := hex.EncodeToString(u[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var s [20]byte
	for j := range s {
		s[j] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(s[:])
}

// RealisticBusinessID returns business i's id in the platform's shape: 15
// digits, distinct for distinct i below 10^14/7919.
func RealisticBusinessID(i int) string {
	return fmt.Sprintf("1%014d", uint64(i)*7919%100_000_000_000_000)
}
