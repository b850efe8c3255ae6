package state

import (
	"encoding/binary"
	"fmt"
)

// Key kinds: the byte after the partition prefix.
const (
	kindContact    = 'c'
	kindIndex      = 'i'
	kindRecipient  = 'r'
	kindCampaign   = 'g'
	kindMeta       = 'm'
	kindCheckpoint = 'k'
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

// userContactsPrefix is the changelog-key prefix of every contact of user.
func userContactsPrefix(dst []byte, user string) []byte {
	dst = append(dst, kindContact)
	return appendLenString(dst, user)
}

// indexKey is the key of the fan-out index: 'i' len(business) business user.
func indexKey(dst []byte, business, user string) []byte {
	dst = append(dst, kindIndex)
	dst = appendLenString(dst, business)
	return append(dst, user...)
}

func businessIndexPrefix(dst []byte, business string) []byte {
	dst = append(dst, kindIndex)
	return appendLenString(dst, business)
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
