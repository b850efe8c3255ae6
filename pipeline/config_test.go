package pipeline

import (
	"strings"
	"testing"

	"github.com/sponsored/sponsor/topics"
)

// TestEnsureDefaultsKeepsGroup checks that EnsureDefaults fills an empty
// Group and leaves a set one alone, shadow run or not: the shadow run's
// own group is derived where it is needed (Config.Run), never written back.
func TestEnsureDefaultsKeepsGroup(t *testing.T) {
	for _, tc := range []struct {
		group, shadow        string
		wantGroup, wantJoins string
	}{
		{"", "", "sponsor", "sponsor"},
		{"blue", "", "blue", "blue"},
		{"", "x", "sponsor", "sponsor-shadow-x"},
		{"blue", "x", "blue", "blue-shadow-x"},
	} {
		c := Config{Group: tc.group, Shadow: tc.shadow}
		c.EnsureDefaults()
		c.EnsureDefaults() // idempotent
		if c.Group != tc.wantGroup {
			t.Errorf("Group %q, Shadow %q: after EnsureDefaults Group = %q, want %q", tc.group, tc.shadow, c.Group, tc.wantGroup)
		}
		if got := c.Run().ConsumerGroup(); got != tc.wantJoins {
			t.Errorf("Group %q, Shadow %q: Run().ConsumerGroup() = %q, want %q", tc.group, tc.shadow, got, tc.wantJoins)
		}
		want := topics.Run{Group: tc.wantGroup, Shadow: tc.shadow}.Names()
		if got := c.Run().Names(); got != want {
			t.Errorf("Group %q, Shadow %q: Run().Names() = %+v, want %+v", tc.group, tc.shadow, got, want)
		}
	}
}

// TestValidateStandbyReplicas: a negative count is refused with the flag's
// name; 0 (the default) and more are accepted.
func TestValidateStandbyReplicas(t *testing.T) {
	for _, n := range []int{-1, 0, 2} {
		c := Config{Brokers: []string{"k:9092"}, Registry: "http://r", StateDir: t.TempDir(), StandbyReplicas: n}
		c.EnsureDefaults()
		err := c.Validate()
		if bad := n < 0; bad != (err != nil) || bad && !strings.Contains(err.Error(), "--standby-replicas") {
			t.Errorf("StandbyReplicas %d: Validate() = %v", n, err)
		}
	}
}

// TestValidateCompression: the four codecs are accepted, zstd by default;
// anything else is refused with the flag's name.
func TestValidateCompression(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"", true}, {"zstd", true}, {"lz4", true}, {"snappy", true}, {"none", true}, {"gzip", false}, {"ZSTD", false}} {
		c := Config{Brokers: []string{"k:9092"}, Registry: "http://r", StateDir: t.TempDir(), Compression: tc.name}
		c.EnsureDefaults()
		if tc.name == "" && c.Compression != "zstd" {
			t.Errorf("default Compression = %q, want zstd", c.Compression)
		}
		err := c.Validate()
		if tc.ok != (err == nil) || !tc.ok && !strings.Contains(err.Error(), "--compression") {
			t.Errorf("Compression %q: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
