package main

import (
	"strings"
	"testing"
)

// TestPartitionerFlag: --partitioner of run (and dev, which shares the
// flags) comes from the YAML file, SPONSOR_PARTITIONER and the command line
// like every run flag, defaults to murmur2, and an unknown name is refused
// naming the field and the flag; the tools refuse one naming the flag.
func TestPartitionerFlag(t *testing.T) {
	file := writeFile(t, "sponsor.yaml", "partitioner: crc32\n")
	_, f, err := parseRun(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.Partitioner != "murmur2" {
		t.Errorf("default partitioner = %q, want murmur2", f.cfg.Partitioner)
	}
	if _, f, err = parseRun([]string{"--config", file}); err != nil || f.cfg.Partitioner != "crc32" {
		t.Errorf("partitioner from the file = %q (%v), want crc32", f.cfg.Partitioner, err)
	}
	t.Setenv("SPONSOR_PARTITIONER", "murmur2")
	if _, f, err = parseRun([]string{"--config", file}); err != nil || f.cfg.Partitioner != "murmur2" {
		t.Errorf("partitioner with SPONSOR_PARTITIONER over the file = %q (%v), want murmur2", f.cfg.Partitioner, err)
	}
	if _, f, err = parseRun([]string{"--config", file, "--partitioner", "crc32"}); err != nil || f.cfg.Partitioner != "crc32" {
		t.Errorf("partitioner from the flag = %q (%v), want crc32", f.cfg.Partitioner, err)
	}

	var out strings.Builder
	err = configPrint([]string{"print", "--brokers", "k:9092", "--registry", "http://r", "--state-dir", t.TempDir(), "--partitioner", "consistent_random"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--partitioner") || !strings.Contains(err.Error(), "consistent_random") {
		t.Errorf("config print with an unknown partitioner: %v, want an error naming --partitioner and the value", err)
	}
	if !strings.Contains(out.String(), `partitioner              "consistent_random"              # flag`) {
		t.Errorf("config print does not show the partitioner from the flag:\n%s", out.String())
	}

	for name, cmd := range map[string]func() error{
		"produce": func() error {
			_, _, err := runCmd(t, cmdFunc("produce"), "", "interactions", "--brokers", "k:9092", "--registry", "http://r", "--partitioner", "fnv1a")
			return err
		},
		"gen": func() error {
			_, _, err := runCmd(t, cmdFunc("gen"), "", "--count", "1", "--brokers", "k:9092", "--registry", "http://r", "--partitioner", "fnv1a")
			return err
		},
		"deadletter redrive": func() error {
			_, _, err := runCmd(t, cmdFunc("deadletter"), "", "redrive", "--brokers", "k:9092", "--partitioner", "fnv1a")
			return err
		},
		"explain": func() error {
			_, _, err := runCmd(t, cmdFunc("explain"), "", "--campaign", "c", "--user", "u", "--brokers", "k:9092", "--registry", "http://r", "--partitioner", "fnv1a")
			return err
		},
	} {
		if err := cmd(); err == nil || !strings.Contains(err.Error(), "--partitioner") || !strings.Contains(err.Error(), "fnv1a") {
			t.Errorf("%s --partitioner fnv1a: %v, want an error naming the flag and the value", name, err)
		}
	}
}
