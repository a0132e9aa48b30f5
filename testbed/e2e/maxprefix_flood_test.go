package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgppeer"
)

// floodBase is where the flood's prefixes start: /32s inside the pod
// pool, nobody's pod CIDR, so that import would accept them were it not
// for the limit.
var floodBase = netip.MustParseAddr("10.244.128.0")

// floodPrefix is the i-th prefix the flood sends.
func floodPrefix(i int) netip.Prefix {
	a := floodBase.As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(i)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
}

// floodIndex is i for floodPrefix(i), or -1.
func floodIndex(p netip.Prefix, n int) int {
	if !p.Addr().Is4() || p.Bits() != 32 {
		return -1
	}
	a, b := p.Addr().As4(), floodBase.As4()
	i := int(uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3])) -
		int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
	if i < 0 || i >= n {
		return -1
	}
	return i
}

// routeWatch follows the node's kernel routes of podroute's protocol
// through netlink events, so that even a route that is there for a
// millisecond is seen.
type routeWatch struct {
	n, limit int
	done     chan struct{}
	stopped  chan struct{}

	mu       sync.Mutex
	present  map[int]bool
	peak     int
	beyond   []int // indexes >= limit ever added
	added    int
	errs     []error
	lastZero time.Time // when the flood's routes last went to none
}

func (l *hostileLab) watchFloodRoutes(t *testing.T, n, limit int) *routeWatch {
	t.Helper()
	w := &routeWatch{n: n, limit: limit, done: make(chan struct{}), stopped: make(chan struct{}), present: map[int]bool{}}
	h, err := vnetns.GetFromName(l.node.Name)
	must(t, err)
	defer h.Close()
	ch := make(chan netlink.RouteUpdate, 8192)
	err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ListExisting: true, ReceiveBufferSize: 8 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			w.mu.Lock()
			w.errs = append(w.errs, err)
			w.mu.Unlock()
		},
	})
	must(t, err)
	go func() {
		defer close(w.stopped)
		for u := range ch {
			if u.Protocol != coreProto || u.Dst == nil {
				continue
			}
			pfx, ok := netipPrefix(u.Dst.IP, u.Dst.Mask)
			if !ok {
				continue
			}
			i := floodIndex(pfx, n)
			if i < 0 {
				continue
			}
			w.mu.Lock()
			switch u.Type {
			case unix.RTM_NEWROUTE:
				w.present[i] = true
				w.added++
				w.peak = max(w.peak, len(w.present))
				if i >= limit {
					w.beyond = append(w.beyond, i)
				}
			case unix.RTM_DELROUTE:
				delete(w.present, i)
				if len(w.present) == 0 {
					w.lastZero = time.Now()
				}
			}
			w.mu.Unlock()
		}
	}()
	l.c.Add("route watch", func() error {
		close(w.done)
		<-w.stopped
		return nil
	})
	return w
}

func netipPrefix(ip []byte, mask []byte) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	ones := 0
	for _, b := range mask {
		for ; b != 0; b <<= 1 {
			ones++
		}
	}
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func (w *routeWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.present)
}

// statusPoller calls the status API without pause and keeps the worst
// latency, the largest "received" podrouted reported for the raw peer and
// whether it ever showed the max-prefix teardown.
type statusPoller struct {
	stop, stopped chan struct{}

	mu        sync.Mutex
	lat       []time.Duration
	errs      int
	firstErr  error
	received  uint64
	sawLimit  bool
	limitInfo string
}

func (l *hostileLab) pollStatus(peer netip.Addr, every time.Duration) *statusPoller {
	s := &statusPoller{stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(every):
			}
			resp, took, err := l.status(10 * time.Second)
			s.mu.Lock()
			s.lat = append(s.lat, took)
			if err != nil {
				s.errs++
				if s.firstErr == nil {
					s.firstErr = err
				}
			}
			for _, p := range resp.GetPeers() {
				if a, err := netip.ParseAddr(p.GetAddress()); err == nil && a == peer {
					s.received = max(s.received, p.GetReceived())
					if strings.Contains(p.GetInfo(), "max-prefix limit") {
						s.sawLimit, s.limitInfo = true, p.GetInfo()
					}
				}
			}
			s.mu.Unlock()
		}
	}()
	l.c.Add("status poller", func() error { s.halt(); return nil })
	return s
}

func (s *statusPoller) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
}

// summary returns the number of calls, the median and the worst latency.
func (s *statusPoller) summary() (int, time.Duration, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lat) == 0 {
		return 0, 0, 0
	}
	lat := slices.Clone(s.lat)
	slices.Sort(lat)
	return len(lat), lat[len(lat)/2], lat[len(lat)-1]
}

// TestMaxPrefixFloodHoldOff is issue 8's repeated flood: a peer floods
// past its limit one prefix per UPDATE and reconnects as soon as it can,
// three times. Each teardown must hold the peer off for maxPrefixHoldTime
// from that teardown (seen from the peer: no OPEN from podrouted
// meanwhile), nothing past the limit may ever reach the kernel (watched
// through netlink events), the FRR sessions stay up, status answers fast
// throughout and shows the teardown, and the log says it once per
// teardown.
func TestMaxPrefixFloodHoldOff(t *testing.T) {
	const (
		limit     = 200
		floodSize = 5000 // prefixes per flood, one per UPDATE
		teardowns = 3
	)
	hold := 4 * time.Second
	l := newHostileLab(t, hostileOptions{raw4: 1, maxPrefixes: limit, maxPrefixHold: hold})
	local := l.raw4[0]
	watch := l.watchFloodRoutes(t, floodSize, limit)
	poller := l.pollStatus(local, 20*time.Millisecond)

	var prefixes []netip.Prefix
	for i := range floodSize {
		prefixes = append(prefixes, floodPrefix(i))
	}
	flood, err := bgppeer.PackUpdates(bgppeer.Update{NextHop: local, ASPath: []uint32{rawASN}}, prefixes, 1, 0)
	must(t, err)

	var lastTeardown time.Time
	var holdOffs []time.Duration
	for round := 1; round <= teardowns+1; round++ {
		p, openAt, turnedAway, err := l.connectRaw(local, hold+20*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if round > 1 {
			held := openAt.Sub(lastTeardown)
			holdOffs = append(holdOffs, held)
			t.Logf("teardown %d: podrouted took the peer back %v after the teardown (maxPrefixHoldTime %v); %d connections turned away meanwhile",
				round-1, held.Round(time.Millisecond), hold, turnedAway)
			if held < hold {
				t.Errorf("teardown %d: the peer was let back after %v, before maxPrefixHoldTime %v", round-1, held, hold)
			}
			if held > hold+15*time.Second {
				t.Errorf("teardown %d: the peer was kept out %v, far past maxPrefixHoldTime %v", round-1, held, hold)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = p.Handshake(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: handshake: %v", round, err)
		}
		if round > teardowns {
			// Back within its limit, the peer's routes are taken again.
			if err := p.SendUpdate(bgppeer.Update{NLRI: prefixes[:50], NextHop: local}); err != nil {
				t.Fatal(err)
			}
			took := testutil.EventuallyEvery(t, 20*time.Millisecond, 10*time.Second, "50 prefixes after the hold-off", func() error {
				if n := watch.count(); n != 50 {
					return fmt.Errorf("%d of the peer's prefixes in the kernel", n)
				}
				return nil
			})
			t.Logf("after the last hold-off the peer's 50 prefixes (under the limit) reached the kernel in %v", took.Round(time.Millisecond))
			p.SendNotification(bgppeer.Notification{Code: 6, Subcode: 2})
			break
		}

		start := time.Now()
		sent, werr := p.SendMany(flood, 64<<10)
		note, ok := p.WaitNotification(15 * time.Second)
		closed := p.WaitClosed(5 * time.Second)
		st := p.State()
		p.Close()
		if !ok || note.Code != 6 || note.Subcode != 1 {
			t.Fatalf("round %d: want NOTIFICATION 6/1 (Cease / Maximum Number of Prefixes Reached), got %s", round, p.Outcome())
		}
		lastTeardown = st.NotificationAt
		how := "all written"
		if werr != nil {
			how = fmt.Sprintf("%d written before the connection failed", sent)
		}
		// The peer's routes must leave the kernel while it is held off.
		_, left := testutil.Poll(10*time.Millisecond, hold, func() bool { return watch.count() == 0 })
		watch.mu.Lock()
		zero := watch.lastZero
		watch.mu.Unlock()
		gone := "none had reached it"
		if zero.After(start) {
			gone = fmt.Sprintf("they left it %v after the teardown", zero.Sub(lastTeardown).Round(time.Millisecond))
		}
		t.Logf("teardown %d: %d one-prefix UPDATEs (%s); NOTIFICATION %s %v after the first; connection closed: %v; kernel: %s",
			round, floodSize, how, note, lastTeardown.Sub(start).Round(time.Millisecond), closed, gone)
		if !left {
			t.Errorf("teardown %d: %d of the peer's prefixes still in the kernel %v after the teardown", round, watch.count(), hold)
		}
		if h := l.health(); !h.ok() {
			t.Errorf("teardown %d: %s", round, h)
		}
		out, _, err := l.cliStatus()
		if err != nil || !strings.Contains(out, fmt.Sprintf("max-prefix limit %d", limit)) {
			t.Errorf("teardown %d: podroute status does not show the max-prefix teardown: %v\n%s", round, err, out)
		}
	}
	poller.halt()

	n, median, worst := poller.summary()
	watch.mu.Lock()
	peak, beyond, added, nlErrs := watch.peak, slices.Clone(watch.beyond), watch.added, slices.Clone(watch.errs)
	watch.mu.Unlock()
	lines := l.logLines("tearing that session down", local.String())
	t.Logf("flood figures: limit %d, maxPrefixHoldTime %v; hold-offs %v; peak %d of the peer's prefixes in the kernel (%d route additions seen by netlink), %d past the limit; status answered %d times, median %v, max %v, %d errors; largest RECEIVED shown %d; %d teardown lines in the log for %d teardowns",
		limit, hold, roundAll(holdOffs), peak, added, len(beyond), n, median.Round(time.Microsecond), worst.Round(time.Microsecond), poller.errs, poller.received, lines, teardowns)

	if len(nlErrs) > 0 {
		t.Errorf("netlink route watch errors (events may have been missed): %v", nlErrs)
	}
	if len(beyond) > 0 {
		t.Errorf("prefixes sent past the limit reached the kernel: indexes %v", beyond[:min(len(beyond), 20)])
	}
	if peak > limit {
		t.Errorf("%d of the peer's prefixes in the kernel at once, limit %d", peak, limit)
	}
	if added == 0 {
		t.Error("netlink saw none of the peer's prefixes: the watch is blind")
	}
	if poller.errs > 0 || worst > time.Second {
		t.Errorf("status API: %d errors (first: %v), slowest answer %v", poller.errs, poller.firstErr, worst)
	}
	if !poller.sawLimit {
		t.Error("the status API never showed the max-prefix teardown in the peer's info")
	}
	if poller.received > limit+1 {
		t.Errorf("status showed RECEIVED %d for a peer limited to %d", poller.received, limit)
	}
	if lines != teardowns {
		t.Errorf("podrouted logged %d teardown lines for %d teardowns", lines, teardowns)
	}
	if h := l.health(); !h.ok() {
		t.Error(h)
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
