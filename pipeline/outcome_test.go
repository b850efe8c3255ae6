package pipeline

import (
	"testing"

	"github.com/sponsored/sponsor/policy"
	"github.com/sponsored/sponsor/schemas"
)

// TestOutcomesFollowReasons: a decision record's outcome is the policy's
// Reason converted by value, so the two enums must list the same names in
// the same order.
func TestOutcomesFollowReasons(t *testing.T) {
	rs := policy.Reasons()
	if len(rs) != len(schemas.Outcomes) {
		t.Fatalf("policy has %d reasons, the Decision schema %d outcomes", len(rs), len(schemas.Outcomes))
	}
	for _, r := range rs {
		if got := schemas.Outcome(r).String(); got != r.String() {
			t.Errorf("policy.Reason %d is %s, schemas.Outcome %d is %s", r, r, r, got)
		}
	}
}
