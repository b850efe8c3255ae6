package main

import (
	"os"
	"path/filepath"

	"github.com/sponsored/sponsor/pipeline"
)

// The layout of a state folder, as the commands that open one (state get,
// state rebuild) and make one (dev) find it.

// pebbleDir is where `sponsor run --state-dir DIR` keeps its Pebble store.
func pebbleDir(stateDir string) string { return pipeline.StoreDir(stateDir) }

// devStateDir is the state folder of `sponsor dev --data DIR` (and of
// `make run`, whose DIR is ./data).
func devStateDir(dataDir string) string { return filepath.Join(dataDir, "state") }

// resolveStateDir returns the state folder that dir names: dir itself when
// it is a --state-dir (or holds no store yet), the state folder inside it
// when it is the --data folder of `sponsor dev`, the folder `make run`
// names.
func resolveStateDir(dir string) string {
	if exists(pebbleDir(dir)) || !exists(pebbleDir(devStateDir(dir))) {
		return dir
	}
	return devStateDir(dir)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
