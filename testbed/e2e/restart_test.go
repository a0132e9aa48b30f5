package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgpcapture"
	"github.com/podroute/podroute/testbed/netns"
)

// routeLoss records every deletion of the watched prefixes from a
// namespace's kernel, from netlink events (nothing is missed between
// polls).
type routeLoss struct {
	mu      sync.Mutex
	deleted []string
	canary  bool
	done    chan struct{}
}

// lossCanary is deleted once at the start to prove the watch sees
// deletions at all.
var lossCanary = netip.MustParsePrefix("192.0.2.0/24")

func watchRouteLoss(t *testing.T, ns *netns.Namespace, watch ...netip.Prefix) *routeLoss {
	t.Helper()
	h, err := vnetns.GetFromPath(netns.RunDir + "/" + ns.Name)
	must(t, err)
	t.Cleanup(func() { h.Close() })
	w := &routeLoss{done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 4096)
	must(t, netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{Namespace: &h,
		ErrorCallback: func(err error) {
			select {
			case <-w.done: // closing the socket ends the reader
			default:
				t.Errorf("route watch in %s: %v", ns.Name, err)
			}
		}}))
	go func() {
		for u := range ch {
			if u.Type != unix.RTM_DELROUTE || u.Dst == nil {
				continue
			}
			p, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			bits, _ := u.Dst.Mask.Size()
			pfx := netip.PrefixFrom(p.Unmap(), bits)
			if pfx == lossCanary {
				w.mu.Lock()
				w.canary = true
				w.mu.Unlock()
				continue
			}
			for _, want := range watch {
				if pfx == want {
					w.mu.Lock()
					w.deleted = append(w.deleted, fmt.Sprintf("%s at %s", pfx, time.Now().Format("15:04:05.000")))
					w.mu.Unlock()
				}
			}
		}
	}()
	ipOrFail(t, ns, "route", "add", "blackhole", lossCanary.String())
	ipOrFail(t, ns, "route", "del", "blackhole", lossCanary.String())
	testutil.Eventually(t, 5*time.Second, "the route watch in "+ns.Name+" sees a deletion", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.canary {
			return fmt.Errorf("canary deletion not seen")
		}
		return nil
	})
	return w
}

func (w *routeLoss) stop() []string {
	close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deleted
}

// After a crash and restart (SIGKILL: no NOTIFICATION, kernel routes kept),
// every session's OPEN must carry the Restart State bit and, for its
// family, the Forwarding State bit (RFC 4724): with v3, only the session
// that came up first did, and the router flushed the other family's routes
// at once. The peers must never withdraw the node's routes meanwhile, and
// the node must call its table re-learned only after End-of-RIB from every
// peer.
func TestCoreRestartFlags(t *testing.T) {
	l := newCoreLab(t, coreLabOptions{})
	waitEstablished(t, l, allCorePeers...)
	checkRestartFlags(t, l, "FRR", func() { waitEstablished(t, l, allCorePeers...) })
}

// The same with BIRD 2 as the graceful-restart helper.
func TestBIRDRestartFlags(t *testing.T) {
	l, _ := newBirdLab(t)
	up := func() {
		testutil.Eventually(t, 60*time.Second, "BIRD's sessions Established", func() error { return l.birdEstablished(allCorePeers...) })
	}
	up()
	checkRestartFlags(t, l.coreLab, "BIRD", up)
}

// checkRestartFlags SIGKILLs node a's podrouted and starts it again, and
// checks the OPENs of its two sessions (IPv4, IPv6) on the wire, that the
// router and node b never lose node a's routes, and that node a calls its
// table learned only after both sessions are back. waitUp waits for every
// session of the router to be Established.
func checkRestartFlags(t *testing.T, l *coreLab, router string, waitUp func()) {
	t.Helper()
	own4, own6 := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:0:1::/64")
	waitRoute(t, l.b, "ipv4", own4.String(), "172.31.2.1", 20*time.Second)
	waitRoute(t, l.b, "ipv6", own6.String(), "fd00:31:2::1", 20*time.Second)

	capture, err := bgpcapture.Start(l.a.ns, l.dir, "node-a")
	must(t, err)
	t.Cleanup(func() { capture.Stop() })
	atRouter := watchRouteLoss(t, l.router, own4, own6)
	atB := watchRouteLoss(t, l.b.ns, own4, own6)

	killed := time.Now()
	must(t, l.a.proc.Stop(syscall.SIGKILL, 5*time.Second))
	l.a.start(l)
	testutil.Eventually(t, 60*time.Second, "node a's table re-learned after the restart", func() error {
		out, err := l.a.cli(l, "status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "table re-learned: yes") {
			return fmt.Errorf("not yet:\n%s", out)
		}
		return nil
	})
	relearned := time.Since(killed)
	waitUp()
	// Keep watching a little after: a flush could follow the OPEN.
	time.Sleep(time.Second)
	lostRouter, lostB := atRouter.stop(), atB.stop()

	msgs, err := capture.Messages()
	must(t, err)
	sessions := map[netip.Addr]string{netip.MustParseAddr("172.31.1.2"): "ipv4-unicast", netip.MustParseAddr("fd00:31:1::2"): "ipv6-unicast"}
	seen := map[netip.Addr]int{}
	for _, m := range msgs {
		fam, ours := sessions[m.Src.Addr()]
		if !ours || m.Type != 1 {
			continue
		}
		seen[m.Src.Addr()]++
		gr, err := bgpcapture.OpenGracefulRestart(m)
		if err != nil {
			t.Errorf("OPEN from %s: %v", m.Src, err)
			continue
		}
		t.Logf("restart flags (%s helper): OPEN from %s after SIGKILL + restart: graceful restart %v, R=%v, restart time %ds, F=%v",
			router, m.Src.Addr(), gr.Present, gr.Restarting, gr.Time, gr.Forwarding)
		if !gr.Present || !gr.Restarting || !gr.Forwarding[fam] {
			t.Errorf("OPEN from %s after the restart: graceful restart %+v, want R set and F set for %s", m.Src, gr, fam)
		}
	}
	for addr := range sessions {
		if seen[addr] == 0 {
			t.Errorf("no OPEN from %s captured after the restart", addr)
		}
	}
	t.Logf("restart flags (%s helper): table re-learned %v after SIGKILL; node a's routes withdrawn meanwhile: at the router %d, at node b %d",
		router, relearned.Round(time.Millisecond), len(lostRouter), len(lostB))
	if len(lostRouter) > 0 || len(lostB) > 0 {
		t.Errorf("node a's routes were withdrawn during its restart: router %v, node b %v", lostRouter, lostB)
	}

	// Re-learned means every peer's End-of-RIB: the log line comes after
	// both sessions came up.
	log := readFile(t, l.a.logPath)
	synced := strings.LastIndex(log, "BGP table learned from every peer")
	if synced < 0 {
		t.Fatalf("podrouted a never logged the table learned")
	}
	for _, peer := range []string{"172.31.1.1", "fd00:31:1::1"} {
		up := strings.LastIndex(log, `"peer":"`+peer+`","from":"OpenConfirm","to":"Established"`)
		if up < 0 || up > synced {
			t.Errorf("table called learned before the session to %s came up (Established at offset %d, learned at %d)", peer, up, synced)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}
