package wire

// TakesFastPath reports whether s's DecodeInteraction reads b with the fast
// decoder rather than the library.
func TakesFastPath(s *Serde, b []byte) bool {
	body, ok := s.interaction.own(b)
	if !ok {
		return false
	}
	_, ok = decodeOwnInteraction(body)
	return ok
}
