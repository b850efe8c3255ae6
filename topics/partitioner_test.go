package topics

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPartitionMurmur2: the default partitioner is exactly franz-go's
// default (kgo.StickyKeyPartitioner(nil), which is the Java client's) for
// keyed records, on keys of every length mod 4 and partition counts with and
// without the hash's high bit mattering.
func TestPartitionMurmur2(t *testing.T) {
	ref := kgo.StickyKeyPartitioner(nil).ForTopic("interactions")
	keys := []string{"", "a", "ab", "abc", "abcd", "user-00001", "alice", "123456789", "\x00\xff\x80", strings.Repeat("k", 1000)}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		keys = append(keys, string(b))
	}
	for _, n := range []int32{1, 2, 3, 4, 6, 7, 24, 100, 1 << 20} {
		for _, k := range keys {
			want := int32(ref.Partition(&kgo.Record{Key: []byte(k)}, int(n)))
			for _, p := range []Partitioner{"", Murmur2} {
				if got := p.Partition([]byte(k), n); got != want {
					t.Fatalf("Partitioner(%q).Partition(%q, %d) = %d, franz-go's default partitioner says %d", p, k, n, got, want)
				}
			}
		}
	}
}

// TestPartitionKnownValues pins both partitioners on fixed keys, so a change
// of either shows here and not as dead letters in production.
func TestPartitionKnownValues(t *testing.T) {
	// crc32 vectors, by hand: CRC-32 IEEE("123456789") = 0xCBF43926 =
	// 3421780262 (the standard check value of CRC-32, e.g. in the
	// catalogue of parametrised CRC algorithms), and CRC-32 IEEE("a") =
	// 0xE8B7BE43 = 3904355907. librdkafka's consistent partitioner takes
	// the hash as unsigned, modulo n: 3421780262 % 6 = 2,
	// 3904355907 % 6 = 3, 3904355907 % 4 = 3. Both have the high bit set,
	// so the Java-style mask (hash & 0x7fffffff) would give other
	// partitions: 1274296614 % 6 = 0 and 1756872259 % 6 = 1; the cases
	// below fail if the mask were applied.
	// murmur2 vectors: the values of franz-go's default partitioner
	// (TestPartitionMurmur2 compares the two on many keys).
	for _, tc := range []struct {
		p    Partitioner
		key  string
		n    int32
		want int32
	}{
		{CRC32, "123456789", 6, 2},
		{CRC32, "a", 6, 3},
		{CRC32, "a", 4, 3},
		{CRC32, "", 6, 0}, // crc32 of nothing is 0
		{CRC32, "anything", 1, 0},
		{Murmur2, "123456789", 6, 0},
		{Murmur2, "a", 6, 4},
		{Murmur2, "alice", 6, 3},
		{Murmur2, "user-00001", 6, 5},
		{Murmur2, "", 6, 3},
		{Murmur2, "anything", 0, -1},
		{CRC32, "anything", -3, -1},
	} {
		if got := tc.p.Partition([]byte(tc.key), tc.n); got != tc.want {
			t.Errorf("%s.Partition(%q, %d) = %d, want %d", tc.p, tc.key, tc.n, got, tc.want)
		}
	}
}

// TestProducerPartitioner: a franz-go client with p.ProducerPartitioner()
// puts a keyed record where p.Partition says, for both partitioners.
func TestProducerPartitioner(t *testing.T) {
	for _, p := range Partitioners() {
		tp := p.ProducerPartitioner().ForTopic("interactions")
		for i := range 500 {
			k := []byte(fmt.Sprintf("user-%05d", i))
			if got, want := int32(tp.Partition(&kgo.Record{Key: k}, 12)), p.Partition(k, 12); got != want {
				t.Fatalf("%s: producer partitioner puts %q on %d, Partition says %d", p, k, got, want)
			}
		}
	}
	// The two really differ: a platform must pick one.
	same := 0
	for i := range 500 {
		k := []byte(fmt.Sprintf("user-%05d", i))
		if Murmur2.Partition(k, 12) == CRC32.Partition(k, 12) {
			same++
		}
	}
	if same > 100 {
		t.Errorf("murmur2 and crc32 agree on %d of 500 keys over 12 partitions, want about 1 in 12", same)
	}
}

func TestPartitionerValidate(t *testing.T) {
	for _, ok := range []Partitioner{"", Murmur2, CRC32} {
		if err := ok.Validate(); err != nil {
			t.Errorf("Partitioner(%q).Validate() = %v, want nil", ok, err)
		}
	}
	for _, bad := range []Partitioner{"murmur2_random", "consistent", "CRC32", "fnv1a"} {
		err := bad.Validate()
		if err == nil || !strings.Contains(err.Error(), string(bad)) || !strings.Contains(err.Error(), "murmur2 or crc32") {
			t.Errorf("Partitioner(%q).Validate() = %v, want an error naming it and the known ones", bad, err)
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	key := []byte("user-0012345")
	for _, p := range Partitioners() {
		b.Run(string(p), func(b *testing.B) {
			b.ReportAllocs()
			var sink int32
			for b.Loop() {
				sink += p.Partition(key, 24)
			}
			_ = sink
		})
	}
}
