package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ErrSessionTimeout is the error of a session timeout the brokers would
// refuse: every JoinGroup would fail with INVALID_SESSION_TIMEOUT, and the
// instance would retry for ever without joining.
var ErrSessionTimeout = errors.New("session timeout outside the brokers' bounds")

// sessionBounds are the session timeouts the group coordinators accept.
type sessionBounds struct {
	min, max time.Duration
	// from says where the bounds come from: the brokers' config, or
	// Kafka's defaults when it could not be read.
	from string
}

// brokerSessionBounds reads group.min.session.timeout.ms and
// group.max.session.timeout.ms from every broker (any of them may be the
// group's coordinator) and returns the tightest. When the config cannot be
// read (no DescribeConfigs permission, a broker that does not answer), it
// returns Kafka's default minimum (6s) and no maximum, with the reason.
func brokerSessionBounds(ctx context.Context, adm *kadm.Client) sessionBounds {
	fallback := func(why error) sessionBounds {
		return sessionBounds{min: DefaultMinSessionTimeout, from: fmt.Sprintf("Kafka's default group.min.session.timeout.ms (the brokers' config could not be read: %v)", why)}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fallback(err)
	}
	ids := md.Brokers.NodeIDs()
	rcs, err := adm.DescribeBrokerConfigs(ctx, ids...)
	if err != nil {
		return fallback(err)
	}
	b := sessionBounds{from: "the brokers' group.min.session.timeout.ms and group.max.session.timeout.ms"}
	for _, rc := range rcs {
		if rc.Err != nil {
			return fallback(fmt.Errorf("broker %s: %w", rc.Name, rc.Err))
		}
		for _, c := range rc.Configs {
			if c.Value == nil {
				continue
			}
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil {
				continue
			}
			d := time.Duration(ms) * time.Millisecond
			switch c.Key {
			case "group.min.session.timeout.ms":
				b.min = max(b.min, d)
			case "group.max.session.timeout.ms":
				if b.max == 0 || d < b.max {
					b.max = d
				}
			}
		}
	}
	if b.min == 0 {
		return fallback(errors.New("no broker reported group.min.session.timeout.ms"))
	}
	return b
}

// check reports whether d is within the bounds, with an error that says
// the bound and what to change.
func (b sessionBounds) check(d time.Duration) error {
	switch {
	case d < b.min:
		return fmt.Errorf("SessionTimeout: %w: %s is under the minimum %s, from %s; raise --session-timeout to at least %s",
			ErrSessionTimeout, d, b.min, b.from, b.min)
	case b.max > 0 && d > b.max:
		return fmt.Errorf("SessionTimeout: %w: %s is over the maximum %s, from %s; lower --session-timeout to at most %s",
			ErrSessionTimeout, d, b.max, b.from, b.max)
	}
	return nil
}
