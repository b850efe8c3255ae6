package schemas

import _ "embed"

var (
	//go:embed interaction.avsc
	interactionAvsc string
	//go:embed campaign.avsc
	campaignAvsc string
	//go:embed inbox.avsc
	inboxAvsc string
)

// InteractionSchema returns the Avro schema (JSON) of [Interaction] values,
// as the pipeline registers it under the interactions topic's subject.
func InteractionSchema() string { return interactionAvsc }

// CampaignSchema returns the Avro schema (JSON) of [Campaign] values.
func CampaignSchema() string { return campaignAvsc }

// InboxSchema returns the Avro schema (JSON) of [InboxMessage] values.
func InboxSchema() string { return inboxAvsc }

//go:embed decision.avsc
var decisionAvsc string

// DecisionSchema returns the Avro schema (JSON) of [Decision] values, the
// audit trail of the decisions topic.
func DecisionSchema() string { return decisionAvsc }
