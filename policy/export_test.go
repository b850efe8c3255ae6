package policy

// Hooks into the partition's erasure rule for the tests of package
// policy_test, which run it over the runtime's store.
var (
	Lookup        = (*Partition).lookup
	PutContact    = (*Partition).putContact
	EraseUser     = (*Partition).eraseUser
	AudienceOf    = (*Partition).audience
	SweepContacts = (*Partition).sweepContacts
	SweepErasures = (*Partition).sweepErasures
)

// SetRounds sets the partition's count of complete sweep rounds.
func (p *Partition) SetRounds(n uint64) { p.meta.Rounds = n }

// CampaignIDs returns the ids of the campaigns the partition remembers.
func (p *Partition) CampaignIDs() []string {
	ids := make([]string, 0, len(p.camps))
	for id := range p.camps {
		ids = append(ids, id)
	}
	return ids
}
