package pipeline

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTxnOutputs: the loop must see the failure of a record whose promise
// runs after Flush returned (franz-go runs the promise of a record that
// failed before it was buffered on another goroutine, and Flush does not
// wait for it), and must not go on while a promise is missing.
func TestTxnOutputs(t *testing.T) {
	o := &txnOutputs{changelog: "changelog", lastChange: map[int32]int64{}}
	o.wg.Add(3)
	o.promise(&kgo.Record{Topic: "changelog", Partition: 2, Offset: 41}, nil)
	o.promise(&kgo.Record{Topic: "inbox", Partition: 2, Offset: 99}, nil)
	late := errors.New("produce context expired before the record was buffered")
	go func() {
		time.Sleep(50 * time.Millisecond)
		o.promise(&kgo.Record{Topic: "changelog", Partition: 2}, late)
	}()
	if err := o.wait(10 * time.Second); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := o.failed(); !errors.Is(err, late) {
		t.Fatalf("failed() = %v, want the late promise's error", err)
	}
	if got := o.lastChange[2]; got != 42 {
		t.Errorf("lastChange[2] = %d, want 42 (the changelog record's offset + 1)", got)
	}

	// A promise that never comes: the instance must stop.
	o = &txnOutputs{changelog: "changelog", lastChange: map[int32]int64{}}
	o.wg.Add(1)
	if err := o.wait(20 * time.Millisecond); !errors.Is(err, errStop) {
		t.Fatalf("wait with a missing promise = %v, want errStop", err)
	}
	o.promise(&kgo.Record{Topic: "inbox"}, nil) // let the waiting goroutine end
}
