package policy

import "github.com/sponsored/sponsor/schemas"

// DeliveryID returns the id of the inbox record for (campaignID, userID):
// schemas.DeliveryID, the inbox contract's deterministic function of the
// pair. Consumers deduplicate on it; it is the same across crashes,
// rebalances and replays.
func DeliveryID(campaignID, userID string) string { return schemas.DeliveryID(campaignID, userID) }
