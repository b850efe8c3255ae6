package topics

import (
	"errors"
	"fmt"
)

// Sentinels for the problems Ensure reports, to test with errors.Is. Each
// comes wrapped in a *TopicError that names the topic and what to do.
var (
	// ErrMissingTopic: an input topic does not exist and Ensure was not
	// allowed to create it (createInputs false, i.e. not dev mode).
	ErrMissingTopic = errors.New("topic does not exist")

	// ErrCoPartitioning: inbox or the changelog exists with a partition
	// count different from interactions'.
	ErrCoPartitioning = errors.New("not co-partitioned with interactions")

	// ErrNotCompacted: the changelog exists with a cleanup.policy other than
	// compact.
	ErrNotCompacted = errors.New("changelog is not compacted")
)

// TopicError is one problem with one topic of the catalog. Ensure does not
// repair existing topics; Fix says what an operator can do.
type TopicError struct {
	Topic  string // the topic's name
	Role   string // one of the Role constants
	Err    error  // one of the sentinels above
	Detail string // what was found, e.g. "it has 3 partitions and interactions has 6"; may be empty
	Fix    string // what to do about it
}

func (e *TopicError) Error() string {
	s := fmt.Sprintf("%s topic %q: %v", e.Role, e.Topic, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Fix != "" {
		s += "; " + e.Fix
	}
	return s
}

// Unwrap returns the sentinel, so that errors.Is(err, ErrCoPartitioning)
// works through Ensure's joined error.
func (e *TopicError) Unwrap() error { return e.Err }
