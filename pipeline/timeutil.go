package pipeline

import (
	"time"

	"github.com/sponsored/sponsor/policy"
)

func millisTime(m policy.Millis) time.Time { return time.UnixMilli(m).UTC() }

// fmtMillis formats an event time for an error message, to the millisecond.
func fmtMillis(m policy.Millis) string { return millisTime(m).Format("2006-01-02T15:04:05.000Z") }
