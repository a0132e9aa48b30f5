package bgpbench

import "time"

// Peak RSS split in two. VmHWM counts every resident page, the receiver's
// own binary included: on kernels whose page cache holds executables in
// large folios (ext4 and XFS on Linux 6.x; this machine's 6.18 maps them
// by the 2 MiB page), a Go binary of 80 MB has most of its text resident
// from the start. Those pages are the file's, shared and reclaimable, and
// the same at 0 routes as at 100k; the routes' cost is the anonymous
// memory. The kernel keeps no peak of that, so it is sampled.

// anonSampleInterval is how often the anonymous peak is sampled. Reading
// /proc/PID/status takes tens of microseconds; the heap grows over
// hundreds of milliseconds, so a peak is missed by at most one interval's
// growth.
const anonSampleInterval = 5 * time.Millisecond

// anonPeak samples the sum of RssAnon over some processes until end.
type anonPeak struct {
	stop chan struct{}
	peak chan uint64
}

func sampleAnonPeak(pids []int) *anonPeak {
	a := &anonPeak{stop: make(chan struct{}), peak: make(chan uint64, 1)}
	go func() {
		t := time.NewTicker(anonSampleInterval)
		defer t.Stop()
		var peak uint64
		for {
			peak = max(peak, pidsStatusKiB(pids, "RssAnon"))
			select {
			case <-a.stop:
				a.peak <- max(peak, pidsStatusKiB(pids, "RssAnon"))
				return
			case <-t.C:
			}
		}
	}()
	return a
}

// end stops the sampling (after one last sample) and returns the peak in KiB.
func (a *anonPeak) end() uint64 {
	close(a.stop)
	return <-a.peak
}
