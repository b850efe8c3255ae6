package main

// plural is the "s" of a count of n things in what a command prints
// ("1 dead letter", "2 dead letters").
func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
