package sinkgroup

import "time"

// SetClock replaces the group's clock, so penalties and in-doubt timeouts
// are tested without waiting.
func SetClock(g *Group, now func() time.Time) { g.now = now }
