package testutil

import (
	"testing"
	"time"
)

// DefaultInterval is how often Eventually calls its condition: often enough
// for the lab's second-scale events, rarely enough not to load a 2-core
// machine that is busy running the lab.
const DefaultInterval = 200 * time.Millisecond

// Poll calls cond every interval until it returns true or timeout has
// passed, and returns how long that took and whether cond became true. It
// does not fail anything itself, for callers that must clean up or explain
// before they fail.
func Poll(interval, timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
}

// Eventually polls cond every DefaultInterval until it returns nil and
// returns how long that took; after timeout it fails the test with what and
// cond's last error.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	tb.Helper()
	return EventuallyEvery(tb, DefaultInterval, timeout, what, cond)
}

// EventuallyEvery is Eventually polling every interval, for measurements
// that need a finer resolution than DefaultInterval.
func EventuallyEvery(tb testing.TB, interval, timeout time.Duration, what string, cond func() error) time.Duration {
	tb.Helper()
	var last error
	took, ok := Poll(interval, timeout, func() bool {
		last = cond()
		return last == nil
	})
	if !ok {
		tb.Fatalf("%s: not true after %v: %v", what, timeout, last)
	}
	return took
}
