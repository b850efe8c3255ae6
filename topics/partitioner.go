package topics

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitioner names the function that maps a record's key to its partition of
// interactions. It is part of the contract: task p owns the users whose key
// maps to p, so every producer of interactions must use the platform's
// partitioner, and the pipeline dead-letters a record found elsewhere. The
// pipeline's own outputs (inbox, decisions, changelog) follow by
// co-partitioning: a user's records there are on the partition of the user's
// interactions, under the same Partitioner.
//
// The zero value is DefaultPartitioner.
type Partitioner string

const (
	// Murmur2 is Kafka's default: the Java client's, franz-go's
	// (kgo.StickyKeyPartitioner(nil)) and librdkafka's murmur2 and
	// murmur2_random: (murmur2(key) & 0x7fffffff) % n.
	Murmur2 Partitioner = "murmur2"
	// CRC32 is librdkafka's consistent and consistent_random (librdkafka's
	// default) for a non-empty key: crc32(key) % n, CRC-32 IEEE taken as an
	// unsigned 32-bit number, with no mask of the high bit. For a platform
	// whose producers all use librdkafka without setting its partitioner.
	CRC32 Partitioner = "crc32"

	// DefaultPartitioner is the partitioner when none is configured.
	DefaultPartitioner = Murmur2
)

// Partitioners returns the known partitioners, the default first.
func Partitioners() []Partitioner { return []Partitioner{Murmur2, CRC32} }

// String returns p's name; the zero value is the default's.
func (p Partitioner) String() string {
	if p == "" {
		return string(DefaultPartitioner)
	}
	return string(p)
}

// Validate reports an unknown partitioner name. The empty name is the
// default and valid.
func (p Partitioner) Validate() error {
	switch p {
	case "", Murmur2, CRC32:
		return nil
	}
	names := make([]string, 0, 2)
	for _, k := range Partitioners() {
		names = append(names, string(k))
	}
	return fmt.Errorf("unknown partitioner %q (want %s)", string(p), strings.Join(names, " or "))
}

// Partition returns the partition of n that key maps to under p: in [0, n),
// or -1 when n < 1. It does not allocate; the pipeline calls it for every
// interaction it reads. An unknown name (which Validate refuses) maps as
// the default.
func (p Partitioner) Partition(key []byte, n int32) int32 {
	if n < 1 {
		return -1
	}
	if p == CRC32 {
		return int32(crc32.ChecksumIEEE(key) % uint32(n))
	}
	return int32(murmur2(key)&0x7fffffff) % n
}

// ProducerPartitioner returns the franz-go partitioner of p, for a client
// that writes interactions (sponsor produce, gen, the demo, a redrive of a
// record without a known partition): records with a key go to
// p.Partition(key, n), so what the tools write is exactly what the
// pipeline's check accepts; records without one are spread as franz-go's
// sticky partitioner does.
func (p Partitioner) ProducerPartitioner() kgo.Partitioner {
	return kgo.StickyKeyPartitioner(func(key []byte, n int) int {
		return int(p.Partition(key, int32(n)))
	})
}

// murmur2 is the 32-bit MurmurHash2 of b with the seed of Kafka's Java client
// (org.apache.kafka.common.utils.Utils.murmur2); TestPartitionMurmur2 checks
// it against franz-go's default partitioner.
func murmur2(b []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
	)
	h := uint32(seed) ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := binary.LittleEndian.Uint32(b)
		k *= m
		k ^= k >> 24
		k *= m
		h = h*m ^ k
	}
	// The last one to three bytes, the highest first.
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
