// Package policy is the pure, deterministic core of the sponsored-messages
// pipeline: the rules that decide whether a campaign reaches a user, and the
// lifecycle of a campaign inside one task (pending, firing, fired, cancelled).
//
// Everything the rules need arrives as explicit values (the contact between
// one user and one business, the user's recent deliveries, the campaign, the
// event time it fires as of) and the functions return the new values and a
// decision. The package does no I/O, reads no clock and keeps no globals, so
// a replay of the same inputs gives the same outputs; the runtime in package
// pipeline loads and stores the values and carries out the decisions.
//
// All times are event times in milliseconds since the Unix epoch (Millis).
package policy
