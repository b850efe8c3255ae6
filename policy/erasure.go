package policy

import "slices"

// Erasure is a user's erasure marker: the rule of USER_ERASED. An erasure
// does not look for the user's contacts (a store keys them by business):
// it marks the user, and from then on a stored contact of the user counts
// only if its business is in Fresh, the businesses the user contacted
// after the erasure (Covers). The expiry sweep deletes the stale contacts
// it passes, and the marker itself once a whole round of the sweep over
// the partition's contacts began after the erasure (ErasureSwept): every
// stale contact is deleted by then, whatever the contact retention (which
// a restart may change). A store keeps markers as data; Partition decides
// with them.
type Erasure struct {
	// At is the event time of the erasure: no interaction of the user at
	// or before it is stored.
	At Millis
	// Round is the partition's count of complete sweep rounds
	// (Meta.Rounds) when the user was erased.
	Round uint64
	// Fresh lists the businesses the user contacted after the erasure.
	Fresh []string
}

// Covers reports whether a stored contact of the user with business is
// from before the erasure: the user has not contacted business since.
func (e *Erasure) Covers(business string) bool { return !slices.Contains(e.Fresh, business) }

// ErasureSwept reports whether a marker written when the partition had
// completed round sweep rounds may go now that it has completed rounds:
// the round in progress at the erasure (round+1) may have passed the
// user's contacts already, so it takes the one after it.
func ErasureSwept(round, rounds uint64) bool { return rounds >= round+2 }

// After returns what a stored contact c of the erased user with business
// counts for: itself (known) when the user contacted business after the
// erasure; otherwise, as a new contact (known false), what it holds of
// after the erasure (Contact.Since: recent interactions a grace kept
// apart), and ok false when that is nothing.
func (e *Erasure) After(business string, c *Contact) (v Contact, known, ok bool) {
	if !e.Covers(business) {
		return *c, true, true
	}
	v, ok = c.Since(e.At)
	return v, false, ok
}

// lookup returns the contact between user and business as the rules see
// it: known false when there is none, or only one from before the user's
// erasure (then c holds what that contact knows of after the erasure: it
// counts as a new contact); with the user's erasure marker, if the store
// keeps one.
func (p *Partition) lookup(user, business string) (c Contact, known bool, e Erasure, erased bool, err error) {
	e, erased, err = p.store.Erasure(user)
	if err != nil {
		return c, false, e, false, err
	}
	c, known, err = p.store.Contact(user, business)
	if err != nil || !known || !erased {
		return c, known, e, erased, err
	}
	c, known, _ = e.After(business, &c)
	return c, known, e, erased, nil
}

// putContact stores the contact between user and business; known says
// lookup (or the audience) returned it as known. A contact made after the
// user's erasure counts again: its business joins the marker's Fresh.
func (p *Partition) putContact(user, business string, c *Contact, known bool) error {
	if known {
		return p.store.PutContact(user, business, c, true)
	}
	e, erased, err := p.store.Erasure(user)
	if err != nil {
		return err
	}
	return p.putLookedUp(user, business, c, false, e, erased)
}

// putLookedUp is putContact for a contact whose user's erasure marker e
// (erased: there is one) the caller has just read (lookup), so that an
// interaction reads the marker once.
func (p *Partition) putLookedUp(user, business string, c *Contact, known bool, e Erasure, erased bool) error {
	if err := p.store.PutContact(user, business, c, known); err != nil {
		return err
	}
	if known || !erased || !e.Covers(business) {
		return nil
	}
	e.Fresh = append(e.Fresh, business)
	return p.store.PutErasure(user, &e)
}

// eraseUser forgets everything the partition knows about user as of event
// time at: from now on the user is a stranger to every business. It marks
// the user (Erasure) and deletes the per-user deliveries at once.
func (p *Partition) eraseUser(user string, at Millis) error {
	if prev, ok, err := p.store.Erasure(user); err != nil {
		return err
	} else if ok && at <= prev.At {
		// A duplicate, or an erasure from before the one already kept:
		// it erases nothing the first did not, and must not forget the
		// contacts made after that one.
		return nil
	}
	if err := p.store.PutErasure(user, &Erasure{At: at, Round: p.meta.Rounds}); err != nil {
		return err
	}
	if _, ok, err := p.store.Recipient(user); err != nil {
		return err
	} else if ok {
		return p.store.DeleteRecipient(user)
	}
	return nil
}

// audience calls fn with each contact of business after the cursor after
// that counts (not one from before its user's erasure), for up to limit
// contacts (Store.Audience): known is false for a contact from before the
// erasure that holds recent interactions after it, which fn sees alone and
// must store as a new contact.
func (p *Partition) audience(business, after string, limit int, fn func(user string, c *Contact, known bool) error) (last string, done bool, err error) {
	return p.store.Audience(business, after, limit, func(user string, c *Contact) error {
		e, erased, err := p.store.Erasure(user) // no read for a user never erased (the store's filter)
		if err != nil {
			return err
		}
		if !erased {
			return fn(user, c, true)
		}
		if v, known, ok := e.After(business, c); ok {
			return fn(user, &v, known)
		}
		return nil
	})
}

// sweepContacts visits up to limit stored contacts after the cursor after
// and deletes those expired reports true for, and those from before their
// user's erasure; one of these that holds recent interactions after the
// erasure is rewritten with only those, as a contact made after it.
func (p *Partition) sweepContacts(after []byte, limit int, expired func(c *Contact) bool) (next []byte, err error) {
	type rewrite struct {
		user, business string
		c              Contact
	}
	var rewrites []rewrite
	next, _, err = p.store.SweepContacts(after, limit, func(user, business string, c *Contact) (bool, error) {
		if expired(c) {
			return true, nil
		}
		e, erased, err := p.store.Erasure(user)
		if err != nil || !erased || !e.Covers(business) {
			return false, err
		}
		if v, ok := c.Since(e.At); ok {
			rewrites = append(rewrites, rewrite{user, business, v})
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for i := range rewrites {
		r := &rewrites[i]
		if err := p.putContact(r.user, r.business, &r.c, false); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// sweepErasures visits up to limit erasure markers after the cursor after
// and deletes those that a complete sweep round began after (ErasureSwept)
// and for which forgotten reports that an interaction at the erasure's
// time would be forgotten on arrival anyway (past the contact retention):
// until then the marker keeps every late interaction from before the
// erasure out of the state.
//
// A marker whose user still has a contact made after the erasure (a
// business in Fresh) stays too, whatever its age: an interaction from
// before the erasure must not reach that contact however late it comes
// (and once the contact is gone, an interaction that old would make a
// contact forgotten on arrival, which the partition does not store).
func (p *Partition) sweepErasures(after []byte, limit int, forgotten func(at Millis) bool) (next []byte, err error) {
	next, _, err = p.store.SweepErasures(after, limit, func(user string, e *Erasure) (bool, error) {
		if !ErasureSwept(e.Round, p.meta.Rounds) || !forgotten(e.At) {
			return false, nil
		}
		for _, business := range e.Fresh {
			if _, ok, err := p.store.Contact(user, business); err != nil || ok {
				return false, err
			}
		}
		return true, nil
	})
	return next, err
}
