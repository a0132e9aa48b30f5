package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgppeer"
)

// wireFuzz counts what the wire fuzz did.
type wireFuzz struct {
	mu       sync.Mutex
	sent     int
	sent6    int // of sent, over IPv6 sessions
	sessions int
	resets   int
	outcomes map[string]int // how sessions ended
	kinds    map[string]int // mutations sent
	resetBy  map[string]int // mutations (of the last message) before a reset
	errs     []error
}

func (f *wireFuzz) add(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// outcomeOf is how a session ended: a NOTIFICATION's code and subcode with their names,
// without its data, to group them.
func outcomeOf(p *bgppeer.Peer) string {
	if n, ok := p.FirstNotification(); ok {
		return "NOTIFICATION " + bgppeer.Notification{Code: n.Code, Subcode: n.Subcode}.String()
	}
	return p.Outcome()
}

// fuzzBase is a valid UPDATE of one family, drawn from r: a few
// prefixes inside the pod pool (sometimes with withdrawals), next hop
// the first raw address of that family (a valid third-party next hop for
// every raw peer, so that a job's bytes depend on the seed alone).
func fuzzBase(r *rand.Rand, ipv6 bool) []byte {
	nh := netip.MustParseAddr("172.31.9.2")
	if ipv6 {
		nh = netip.MustParseAddr("fd00:31:9::2")
	}
	u := bgppeer.Update{NextHop: nh, ASPath: []uint32{rawASN}, Origin: uint8(r.IntN(3))}
	if r.IntN(4) == 0 {
		u.ASPath = append(u.ASPath, 64512+uint32(r.IntN(100)))
	}
	prefix := func() netip.Prefix {
		if !ipv6 {
			bits := 24 + r.IntN(9)
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(160 + r.IntN(32)), byte(r.IntN(256))}), bits).Masked()
		}
		bits := 56 + r.IntN(73)
		a := [16]byte{0xfd, 0, 0x02, 0x44, 0, 0, 1, byte(r.IntN(256))}
		for i := 8; i < 16; i++ {
			a[i] = byte(r.IntN(256))
		}
		return netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
	}
	for range 1 + r.IntN(6) {
		u.NLRI = append(u.NLRI, prefix())
	}
	if r.IntN(3) == 0 {
		u.Withdrawn = append(u.Withdrawn, prefix())
	}
	b, err := u.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// TestWireFuzz sends mutated UPDATEs (seeded: bit flips, length field
// edits, truncations, attribute damage; bgppeer.Mutate) from 24
// configured peers at once, each on a session that is opened afresh
// whenever podrouted resets the last one (podrouted keeps a reset peer
// Idle for 5 s, hence many peers). After every batch of messages
// (checked while the fuzz goes on) and at the end, podrouted must be running, answer `podroute status`, keep its FRR sessions and
// routes, and hold no route a peer could not legitimately give it; at the
// end, once the peers are gone, none of their routes may be left.
func TestWireFuzz(t *testing.T) {
	const (
		total = 300
		batch = 60 // messages between checks
		seed  = 20261201
		// settle is how long a worker waits after a message for the
		// session to be reset before it sends the next.
		settle = 150 * time.Millisecond
	)
	l := newHostileLab(t, hostileOptions{raw4: 20, raw6: 4})
	peers := append(append([]netip.Addr(nil), l.raw4...), l.raw6...)
	f := &wireFuzz{outcomes: map[string]int{}, kinds: map[string]int{}, resetBy: map[string]int{}}
	deadline := time.Now().Add(50 * time.Second)

	sessions := make([]*bgppeer.Peer, len(peers))
	defer func() {
		for _, p := range sessions {
			if p != nil {
				p.Close()
			}
		}
	}()
	// Jobs by family, in proportion to the peers of each: job i is the
	// same message in every run.
	jobs := map[bool]chan int{false: make(chan int, total), true: make(chan int, total)}
	total6 := total * len(l.raw6) / len(peers)
	for i := range total {
		jobs[i >= total-total6] <- i
	}
	close(jobs[false])
	close(jobs[true])
	start := time.Now()
	var wg sync.WaitGroup
	for w, local := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.fuzzWorker(f, &sessions[w], local, jobs[local.Is6()], settle, deadline, seed)
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	// A check after every batch of messages, while the fuzz goes on, and
	// one when it is over.
	for b, done := 1, false; !done; b++ {
		for !done {
			select {
			case <-finished:
				done = true
			case <-time.After(50 * time.Millisecond):
			}
			f.mu.Lock()
			sent := f.sent
			f.mu.Unlock()
			if sent >= b*batch {
				break
			}
		}
		h := l.health()
		f.mu.Lock()
		sent, resets := f.sent, f.resets
		f.mu.Unlock()
		name := fmt.Sprintf("check %d", b)
		if done {
			name = "final check"
		}
		t.Logf("wire fuzz %s: %d mutated UPDATEs sent, %d sessions reset; %s", name, sent, resets, h)
		if !h.ok() {
			t.Fatalf("%s: %s", name, h)
		}
		if err := l.onlyLegitimateRoutes(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if time.Now().After(deadline) {
		t.Logf("wire fuzz: time budget used up")
	}
	took := time.Since(start)

	// Sessions still up end with a Cease; the connection's end also
	// counts as one reset for the table.
	for i, p := range sessions {
		if p != nil {
			p.SendNotification(bgppeer.Notification{Code: 6, Subcode: 2})
			sessions[i] = nil
		}
	}
	left := testutil.EventuallyEvery(t, 50*time.Millisecond, 15*time.Second, "the raw peers' routes gone", func() error {
		for _, fam := range []string{"ipv4", "ipv6"} {
			routes, err := l.ownRoutes(fam)
			if err != nil {
				return err
			}
			for dst, gws := range routes {
				if _, ok := frrRoutes[fam][dst]; ok || slices1(gws) == "blackhole" {
					continue
				}
				return fmt.Errorf("%s via %v still in the kernel", dst, gws)
			}
		}
		return nil
	})

	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("wire fuzz: %d mutated UPDATEs (seed %d; %d IPv6) from %d peers (%d IPv6) in %v over %d sessions; %d sessions reset by podrouted: %s",
		f.sent, seed, f.sent6, len(peers), len(l.raw6), took.Round(time.Millisecond), f.sessions, f.resets, counts(f.outcomes))
	var parts []string
	for k, n := range f.kinds {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, f.resetBy[k], n))
	}
	sort.Strings(parts)
	t.Logf("wire fuzz: sessions reset / messages sent, per mutation in the message: %s", strings.Join(parts, ", "))
	t.Logf("wire fuzz: after the peers left, their routes were gone from the kernel within %v", left.Round(time.Millisecond))
	if len(f.errs) > 0 {
		t.Errorf("wire fuzz worker errors: %v", f.errs)
	}
	if f.sent < total/2 {
		t.Errorf("only %d of %d mutated UPDATEs sent in the time budget", f.sent, total)
	}
	if h := l.health(); !h.ok() {
		t.Error(h)
	}
}

func slices1(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s, ",")
}

// fuzzWorker sends the jobs' mutated UPDATEs from local, one at a time,
// opening a fresh session whenever the last one was reset.
func (l *hostileLab) fuzzWorker(f *wireFuzz, session **bgppeer.Peer, local netip.Addr, jobs <-chan int,
	settle time.Duration, deadline time.Time, seed uint64) {
	for time.Now().Before(deadline) {
		if *session == nil {
			p, _, _, err := l.connectRaw(local, time.Until(deadline))
			if err != nil {
				return // out of time
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = p.Handshake(ctx)
			cancel()
			if err != nil {
				p.Close()
				f.add(func() { f.outcomes["handshake failed: "+shortErr(err)]++ })
				continue
			}
			*session = p
			f.add(func() { f.sessions++ })
		}
		job, ok := <-jobs
		if !ok {
			return
		}
		p := *session
		r := rand.New(rand.NewPCG(seed, uint64(job)))
		msg, kinds := bgppeer.Mutate(r, fuzzBase(r, local.Is6()))
		err := p.Send(msg)
		f.add(func() {
			f.sent++
			if local.Is6() {
				f.sent6++
			}
			for _, k := range kinds {
				f.kinds[k]++
			}
		})
		if err == nil && !p.WaitClosed(settle) {
			continue
		}
		p.WaitClosed(2 * time.Second)
		*session = nil
		f.add(func() {
			f.resets++
			f.outcomes[outcomeOf(p)]++
			for _, k := range kinds {
				f.resetBy[k]++
			}
		})
		p.Close()
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, ":"); i > 0 {
		return s[:i]
	}
	return s
}

// onlyLegitimateRoutes checks every route of podroute's protocol in the
// node's kernel: FRR's, the node's own blackholes, or a raw peer's route
// inside the pod pools, outside the node's own pod CIDRs, via an address
// on the raw peers' link other than the node's own.
func (l *hostileLab) onlyLegitimateRoutes() error {
	pools := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/48")}
	own := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:0:1::/64")}
	rawLinks := []netip.Prefix{netip.MustParsePrefix("172.31.9.0/24"), netip.MustParsePrefix("fd00:31:9::/64")}
	nodeOwn := nodeAddr(l.raw4[0]).Addr()
	within := func(p netip.Prefix, set []netip.Prefix) bool {
		for _, s := range set {
			if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	overlaps := func(p netip.Prefix, set []netip.Prefix) bool {
		for _, s := range set {
			if s.Overlaps(p) {
				return true
			}
		}
		return false
	}
	var bad []string
	for _, fam := range []string{"ipv4", "ipv6"} {
		routes, err := l.ownRoutes(fam)
		if err != nil {
			return err
		}
		for dst, gws := range routes {
			if _, ok := frrRoutes[fam][dst]; ok {
				continue
			}
			p, err := netip.ParsePrefix(dst)
			if err != nil {
				a, aerr := netip.ParseAddr(dst)
				if aerr != nil {
					bad = append(bad, dst)
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if slices1(gws) == "blackhole" && within(p, own) {
				continue
			}
			ok := within(p, pools) && !overlaps(p, own) && len(gws) > 0
			for _, gw := range gws {
				a, err := netip.ParseAddr(gw)
				ok = ok && err == nil && within(netip.PrefixFrom(a, a.BitLen()), rawLinks) &&
					a != nodeOwn && a != netip.MustParseAddr("fd00:31:9::1")
			}
			if !ok {
				bad = append(bad, fmt.Sprintf("%s via %v", dst, gws))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("routes no peer may give this node are in its kernel: %v", bad)
	}
	return nil
}
