package wire_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/sponsored/sponsor/schemas"
	"github.com/sponsored/sponsor/schemas/wire"
)

func Example() {
	reg := srfake.New() // a real registry in production
	defer reg.Close()
	rc, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		panic(err)
	}
	s, err := wire.New(context.Background(), rc, wire.Topics{
		Interactions: "interactions", Campaigns: "campaigns", Inbox: "inbox",
	})
	if err != nil {
		panic(err)
	}

	in := schemas.Interaction{
		EventID: "ev-1", UserID: "u-1", BusinessID: "b-1",
		Kind:       schemas.BotCTAClick,
		OccurredAt: time.Date(2025, 6, 1, 9, 30, 0, 0, time.UTC),
	}
	value, err := s.AppendInteraction(nil, &in) // the Kafka record's value
	if err != nil {
		panic(err)
	}
	out, err := s.DecodeInteraction(value)
	fmt.Println(out.UserID, out.Kind, out.OccurredAt.Format(time.RFC3339), err)

	// A value that is not in the wire format is a DecodeError: dead-letter it.
	_, err = s.DecodeInteraction([]byte("hello"))
	var de *wire.DecodeError
	if errors.As(err, &de) {
		fmt.Println("dead letter, reason:", de.Reason)
	}
	// Output:
	// u-1 BOT_CTA_CLICK 2025-06-01T09:30:00Z <nil>
	// dead letter, reason: not-wire-format
}
