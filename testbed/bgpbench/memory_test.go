package bgpbench

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

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
	stop   chan struct{}
	peak   chan uint64
	once   sync.Once
	result uint64
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

// end stops the sampling (after one last sample) and returns the peak in
// KiB. It may be called more than once (deferred, so that a benchmark that
// fails half-way does not leave the sampler running for the rest of the
// run), and returns the same peak each time.
func (a *anonPeak) end() uint64 {
	a.once.Do(func() {
		close(a.stop)
		a.result = <-a.peak
	})
	return a.result
}

// TestSampleAnonPeak: memory this process touches while sampling shows in
// the peak, and end gives the same peak when called again.
func TestSampleAnonPeak(t *testing.T) {
	const size = 64 << 20
	self := []int{os.Getpid()}
	debug.FreeOSMemory() // so that the buffer below cannot reuse resident pages
	before := pidsStatusKiB(self, "RssAnon")
	if before == 0 {
		t.Skip("no RssAnon in /proc/self/status")
	}
	a := sampleAnonPeak(self)
	buf := make([]byte, size)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1 // resident only once written
	}
	time.Sleep(3 * anonSampleInterval)
	peak := a.end()
	runtime.KeepAlive(buf)
	if again := a.end(); again != peak {
		t.Errorf("end() again = %d KiB, first %d KiB", again, peak)
	}
	if grew := int64(peak) - int64(before); grew < size/1024*3/4 {
		t.Errorf("anonymous peak %d KiB, %d KiB before touching 64 MiB: grew by %d KiB, want about 65536", peak, before, grew)
	}
}
