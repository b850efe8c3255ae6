package wire

// TakesFastPath reports whether s's DecodeInteraction reads b with the fast
// decoder rather than the library.
func TakesFastPath(s *Serde, b []byte) bool {
	_, fast, _ := s.decodeInteraction(b)
	return fast
}
