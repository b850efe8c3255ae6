package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sponsored/sponsor/pipeline"
	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/state"
)

// TestStateArgs checks the argument errors of `sponsor state` and that get
// and rebuild tell a folder in use (held here by an open store, as a
// running instance holds it) from other failures.
func TestStateArgs(t *testing.T) {
	dir := t.TempDir()
	s, err := state.Open(pebbleDir(dir), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	devData := t.TempDir()
	ds, err := state.Open(pebbleDir(devStateDir(devData)), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want get or rebuild"},
		{[]string{"frob"}, `unknown state command "frob"`},
		{[]string{"get", "--state-dir", dir}, "--user is required"},
		{[]string{"get", "--user", "u"}, "give exactly one of --state-dir DIR and --from"},
		{[]string{"get", "--user", "u", "--state-dir", dir, "--from", "http://x"}, "give exactly one of"},
		{[]string{"get", "--user", "u", "--state-dir", filepath.Join(dir, "none")}, "no state store in " + filepath.Join(dir, "none") + ": give the --state-dir of `sponsor run`"},
		// The --data folder of `sponsor dev` (make run's ./data) is
		// accepted: its state folder, in use here, is the one opened.
		{[]string{"get", "--user", "u", "--state-dir", devData}, "the folder " + devStateDir(devData) + " is in use by a running instance"},
		{[]string{"get", "--user", "u", "--state-dir", dir}, "the folder " + dir + " is in use by a running instance: use --from http://<its --http address>"},
		{[]string{"rebuild", "--state-dir", dir}, "--brokers is required"},
		{[]string{"rebuild", "--brokers", "127.0.0.1:1"}, "--state-dir is required"},
		{[]string{"rebuild", "--brokers", "127.0.0.1:1", "--state-dir", dir, "--partitions", "0,x"}, `--partitions: "x" is not a partition number`},
		{[]string{"rebuild", "--brokers", "127.0.0.1:1", "--state-dir", dir}, "the folder " + dir + " is in use by a running instance: stop it first"},
	} {
		_, _, err := runCmd(t, cmdFunc("state"), "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("state %s: got %v, want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestParsePartitions(t *testing.T) {
	got, err := parsePartitions("3, 0,3,1")
	if err != nil || !slices.Equal(got, []int32{0, 1, 3}) {
		t.Errorf("got %v, %v; want [0 1 3]", got, err)
	}
	for _, bad := range []string{"-1", "a", "1,,2"} {
		if _, err := parsePartitions(bad); err == nil {
			t.Errorf("parsePartitions(%q): no error", bad)
		}
	}
}

// TestUserFromHTTPWaitsForAScan: an instance answers 429 while another
// whole-state scan runs; `state get --from` waits the Retry-After and asks
// again instead of failing.
func TestUserFromHTTPWaitsForAScan(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(pipeline.StateError{Error: "busy"})
			return
		}
		json.NewEncoder(w).Encode(state.UserView{User: r.URL.Query().Get("user")})
	}))
	defer srv.Close()
	v, err := userFromHTTP(context.Background(), srv.URL, "u1", "")
	if err != nil || v.User != "u1" {
		t.Fatalf("userFromHTTP = %+v, %v; want the view of u1 after one retry", v, err)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}

// TestStateGetDevDataFolder: `sponsor state get --state-dir data` reads
// the state of `make run` (sponsor dev --data data), which is in
// data/state: the folder the user was shown.
func TestStateGetDevDataFolder(t *testing.T) {
	data := t.TempDir()
	s, err := state.Open(pebbleDir(devStateDir(data)), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The store opens; it is empty, so the user is not there.
	_, _, err = runCmd(t, cmdFunc("state"), "", "get", "--user", "u", "--state-dir", data)
	if err == nil || !strings.Contains(err.Error(), "user u is not in this state") {
		t.Fatalf("state get --state-dir %s (a sponsor dev --data folder): %v, want the empty store's 'user u is not in this state'", data, err)
	}
}

// TestStateGetRetention: `state get --state-dir` judges expiry with the
// --contact-retention it is given (the instance's), not a default: a
// contact 4 days old is expired under 48h and kept under the default.
func TestStateGetRetention(t *testing.T) {
	dir := t.TempDir()
	s, err := state.Open(pebbleDir(dir), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	day := policy.Day
	b := s.NewBatch(0)
	var c policy.Contact
	c.Apply(schemas.UserMessage, 10*day)
	if err := b.PutContact("u", "biz", &c, false); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMeta(&policy.Meta{Input: 1, Time: 14 * day}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args    []string
		expired bool
	}{
		{nil, false},
		{[]string{"--contact-retention", "48h"}, true},
	} {
		out, _, err := runCmd(t, cmdFunc("state", "get"), "", append([]string{"--user", "u", "--state-dir", dir}, tc.args...)...)
		if err != nil {
			t.Fatalf("state get %v: %v", tc.args, err)
		}
		var v state.UserView
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("state get %v: %v\n%s", tc.args, err, out)
		}
		if len(v.Partitions) != 1 || len(v.Partitions[0].Contacts) != 1 || v.Partitions[0].Contacts[0].Expired != tc.expired {
			t.Errorf("state get %v: got %+v, want the contact with expired %t", tc.args, v, tc.expired)
		}
	}
}
