package state

import (
	"encoding/binary"
	"fmt"
)

// Key kinds: the byte after the partition prefix.
const (
	// kindContact is a contact's changelog key (user first). In Pebble the
	// contact is kept under kindBusinessContact instead (business first),
	// so that a fan-out reads a business's contacts, values included, in
	// one sequential scan.
	kindContact         = 'c'
	kindBusinessContact = 'b'
	kindErasure         = 'x'
	kindRecipient       = 'r'
	kindCampaign        = 'g'
	kindMeta            = 'm'
	kindCheckpoint      = 'k'

	// kindLegacyIndex is the fan-out index ('i' business user) of the
	// layout before the business-first contacts; a store that still holds
	// one, or a 'c' key, has the old layout (legacyPartitions).
	kindLegacyIndex = 'i'
)

// metaName is the one metadata key a task keeps.
const metaName = "task"

const prefixLen = 4

func appendPartition(dst []byte, p int32) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(p))
}

func appendLenString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// contactKey is the changelog key of a contact: 'c' len(user) user business.
func contactKey(dst []byte, user, business string) []byte {
	dst = append(dst, kindContact)
	dst = appendLenString(dst, user)
	return append(dst, business...)
}

// businessContactsPrefix is the Pebble-key prefix of every contact of
// business.
func businessContactsPrefix(dst []byte, business string) []byte {
	dst = append(dst, kindBusinessContact)
	return appendLenString(dst, business)
}

// erasureKey is the changelog key of a user's erasure marker.
func erasureKey(dst []byte, user string) []byte {
	dst = append(dst, kindErasure)
	return append(dst, user...)
}

// appendPebbleKey appends the Pebble key of changelog key k of partition p:
// the partition prefix, then k, except for a contact, whose Pebble key puts
// the business first ('b' len(business) business user).
func appendPebbleKey(dst []byte, p int32, k []byte) ([]byte, error) {
	dst = appendPartition(dst, p)
	if len(k) == 0 || k[0] != kindContact {
		return append(dst, k...), nil
	}
	user, business, err := splitLenString(k[1:])
	if err != nil {
		return nil, err
	}
	dst = append(dst, kindBusinessContact)
	dst = binary.AppendUvarint(dst, uint64(len(business)))
	dst = append(dst, business...)
	return append(dst, user...), nil
}

// appendChangelogKey appends the changelog key of k, a Pebble key without
// its partition prefix: the inverse of appendPebbleKey.
func appendChangelogKey(dst, k []byte) ([]byte, error) {
	if len(k) == 0 || k[0] != kindBusinessContact {
		return append(dst, k...), nil
	}
	business, user, err := splitBusinessContact(k)
	if err != nil {
		return nil, err
	}
	dst = append(dst, kindContact)
	dst = binary.AppendUvarint(dst, uint64(len(user)))
	dst = append(dst, user...)
	return append(dst, business...), nil
}

// splitBusinessContact returns the business and the user of a Pebble
// contact key without its partition prefix.
func splitBusinessContact(k []byte) (business, user []byte, err error) {
	if len(k) == 0 || k[0] != kindBusinessContact {
		return nil, nil, fmt.Errorf("%w: %q is not a contact key", ErrCorrupt, k)
	}
	return splitLenString(k[1:])
}

func recipientKey(dst []byte, user string) []byte {
	dst = append(dst, kindRecipient)
	return append(dst, user...)
}

func campaignKey(dst []byte, id string) []byte {
	dst = append(dst, kindCampaign)
	return append(dst, id...)
}

func metaKey(dst []byte) []byte {
	dst = append(dst, kindMeta)
	return append(dst, metaName...)
}

// splitLenString splits b into a length-prefixed string and the rest.
func splitLenString(b []byte) (s, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, fmt.Errorf("%w: bad length-prefixed key", ErrCorrupt)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// The changelog keys a tool that reads the changelog topic without a store
// looks for (sponsor explain). A changelog record's value under one of them
// is what the matching Decode function reads; a nil value deletes the key.

// CampaignChangelogKey is the key of a task's record of campaign
// (DecodeProgress).
func CampaignChangelogKey(campaign string) []byte { return campaignKey(nil, campaign) }

// ContactChangelogKey is the key of the contact between user and business
// (DecodeContact).
func ContactChangelogKey(user, business string) []byte { return contactKey(nil, user, business) }

// ErasureChangelogKey is the key of user's erasure marker (DecodeErasure).
func ErasureChangelogKey(user string) []byte { return erasureKey(nil, user) }

// MetaChangelogKey is the key of the task's metadata (DecodeMeta).
func MetaChangelogKey() []byte { return metaKey(nil) }
