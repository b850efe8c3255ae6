package pipeline

import (
	"time"

	"github.com/sponsored/sponsor/pipeline/policy"
)

func millisTime(m policy.Millis) time.Time { return time.UnixMilli(m).UTC() }
