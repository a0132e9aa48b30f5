package bgp

import (
	"testing"
	"time"
)

func TestScratchMaxPrefixTimeline(t *testing.T) {
	pr, _ := maxPrefixSetup(t)
	start := time.Now()
	mark := pr.a.eventCount()
	for time.Since(start) < 40*time.Second {
		time.Sleep(500 * time.Millisecond)
		if ch := pr.a.stateChangesSince(mark, addrB); len(ch) > 0 {
			t.Logf("%v: %v", time.Since(start).Round(time.Second), ch)
			mark = pr.a.eventCount()
		}
	}
	t.Log(pr.a.logs.String())
	t.Log("B:", pr.b.logs.String())
}
