package bgpbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/bgppeer"
	"github.com/podroute/podroute/testbed/bird"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// BenchmarkBGPFlood is issue 9's flood from a hostile peer: a raw BGP
// peer (testbed/bgppeer, in a namespace of its own) sends floodN IPv4
// /32s inside the pod pool, one prefix per UPDATE, as fast as the socket
// takes them (8 KiB writes), to a receiver in its own namespace; BIRD 2
// (kernel protocol) gets the same flood in the same run, after podrouted,
// as the anchor.
//
// Run: go test ./testbed/bgpbench -run '^$' -bench BGPFlood -benchtime 1x
//
// limit=1000000: the receiver's per-peer limit is far above the flood
// (podrouted `maxPrefixes: 1000000`; BIRD has no limit by default). The
// time is from the first UPDATE on the wire (kernel receive timestamp on
// the receiver's interface, as BenchmarkBGPToKernel's) until all floodN
// are in the receiver's kernel (netlink route notifications, the same
// watch); also the receiver's CPU seconds and peak RSS (VmHWM), and when
// the last UPDATE reached the receiver's interface (TCP flow control: a
// receiver that reads slowly makes the flood last longer on the wire).
// Target (issue 9): all in podrouted's kernel within 30 s.
//
//	flood peer (AS 65000) ── to-pod ── eth0  podrouted (AS 65001), 172.31.1.0/24
//	                      └─ to-bird ─ eth0  BIRD 2    (AS 65002), 172.31.2.0/24
//
// limit=10000: the flooding peer's limit is floodLowLimit (podrouted
// `maxPrefixes: 10000`; BIRD `receive limit 10000 action disable`), and a
// second, well-behaved raw peer in another namespace (AS 65010, goodN
// prefixes in 10.250.0.0/24 in one UPDATE) is Established with its routes
// in the kernel before the flood starts. Shown: the NOTIFICATION the
// flooding peer gets (Cease, subcode 1: maximum number of prefixes
// reached) and when, against the wire: how many UPDATEs the peer had
// written into its socket by then (a bound: the sockets on both sides
// buffer several MB, a few tens of thousands of these 48-byte UPDATEs)
// and how many had reached the receiver's interface; the time from the
// arrival of the UPDATE past the limit (the 10,001st) to the
// NOTIFICATION; how many of the flood's prefixes ever reached the
// receiver's kernel (netlink, every notification: at most the limit, and
// none sent past it); for podrouted, the largest RECEIVED its status API
// showed for the peer while it was polled every 50 ms during the flood;
// and that the other session is untouched (the receiver still shows it
// Established since the same time, its peer got no NOTIFICATION and its
// routes are all in the kernel). Target (issue 9: "torn down at the
// limit, not seconds later, others untouched"), read here as: none past
// the limit ever in the kernel, the NOTIFICATION within floodNoteTarget
// of the UPDATE past the limit reaching the interface, and the other
// session untouched.
//
//	flood peer ── to-lpod ── eth0 podrouted eth1 ── to-lpod ── good peer   172.31.3.0/24, 172.31.4.0/24
//	           └─ to-lbird ─ eth0 BIRD 2    eth1 ── to-lbird ─┘            172.31.5.0/24, 172.31.6.0/24
//
// The summary sub-benchmark prints one table of both with podrouted's
// ratio to BIRD. Everything is bounded: the flood is a fixed list of
// messages, every wait has a deadline (floodBulkLimit for the bulk), and
// what the benchmark started is torn down whichever way it ends.
func BenchmarkBGPFlood(b *testing.B) {
	skipUnlessFloodMachine(b)
	bin := benchPodrouted(b)
	var high, low [2]*floodReceiver // podrouted, BIRD
	b.Run(fmt.Sprintf("limit=%d", floodHighLimit), func(b *testing.B) {
		l := newFloodLab(b, bin, false)
		high = [2]*floodReceiver{l.pod, l.bird}
		b.Run("receiver=podrouted", func(b *testing.B) { l.measure(b, l.pod) })
		l.retire(b, l.pod)
		b.Run("receiver=bird", func(b *testing.B) { l.measure(b, l.bird) })
	})
	b.Run(fmt.Sprintf("limit=%d", floodLowLimit), func(b *testing.B) {
		l := newFloodLab(b, bin, true)
		low = [2]*floodReceiver{l.pod, l.bird}
		b.Run("receiver=podrouted", func(b *testing.B) { l.measureLimit(b, l.pod) })
		l.retire(b, l.pod)
		b.Run("receiver=bird", func(b *testing.B) { l.measureLimit(b, l.bird) })
	})
	b.Run("summary", func(b *testing.B) { floodSummary(b, high, low) })
}

const (
	floodN          = 200_000
	floodHighLimit  = 1_000_000
	floodLowLimit   = 10_000
	floodPeerAS     = 65000
	goodPeerAS      = 65010
	goodN           = 100
	floodBatchBytes = 8 << 10
	// floodBulkLimit bounds the wait for all floodN in the kernel: the
	// target is 30 s; issue 9 saw podrouted miss 120 s.
	floodBulkLimit = 150 * time.Second
	// floodNoteLimit bounds the wait for the NOTIFICATION at the limit.
	floodNoteLimit = 60 * time.Second
	floodTarget    = 30 * time.Second
	// floodNoteTarget is "at the limit, not seconds later" in time: from
	// the UPDATE past the limit reaching the receiver's interface to the
	// NOTIFICATION.
	floodNoteTarget = time.Second
	floodPodAS      = 65001
	floodBirdAS     = 65002
)

var (
	// floodRange holds the flood's prefixes (10.128.0.0 upwards, inside
	// the pod pool bgpBenchPool); goodRange the good peer's.
	floodRange = netip.MustParsePrefix("10.128.0.0/12")
	goodRange  = netip.MustParsePrefix("10.250.0.0/24")
)

func skipUnlessFloodMachine(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("skipping: needs root to create network namespaces")
	}
	for _, bin := range []string{bird.Binary, bird.Birdc} {
		if _, err := os.Stat(bin); err != nil {
			b.Skipf("skipping: needs BIRD 2 (make deps): %v", err)
		}
	}
}

// benchPodrouted is the podrouted binary the flood and status benchmarks
// run: testenv.Binaries' or, as in BenchmarkBGPToKernel, the one
// PODROUTE_BENCH_PODROUTED names.
func benchPodrouted(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv(bgpBenchBinaryEnv); bin != "" {
		b.Logf("podrouted: %s (from %s)", bin, bgpBenchBinaryEnv)
		return bin
	}
	return testenv.Binary(b, "podrouted")
}

// prefixRange returns n consecutive /32s from the start of r.
func prefixRange(r netip.Prefix, n int) []netip.Prefix {
	base := binary.BigEndian.Uint32(r.Addr().AsSlice())
	out := make([]netip.Prefix, n)
	var a [4]byte
	for i := range out {
		binary.BigEndian.PutUint32(a[:], base+uint32(i))
		out[i] = netip.PrefixFrom(netip.AddrFrom4(a), 32)
	}
	return out
}

// floodIndex is i for the i-th flood prefix (0-based), or -1.
func floodIndex(p netip.Prefix) int {
	if !floodRange.Contains(p.Addr()) || p.Bits() != 32 {
		return -1
	}
	return int(binary.BigEndian.Uint32(p.Addr().AsSlice()) - binary.BigEndian.Uint32(floodRange.Addr().AsSlice()))
}

// floodLab is the flood peer's namespace, the good peer's (limit
// variant) and two receivers.
type floodLab struct {
	c          *netns.Cleanup
	run, dir   string
	limited    bool
	peer, good *netns.Namespace
	pod, bird  *floodReceiver
}

// floodReceiver is a bgpBenchReceiver (flood link on eth0) with, in the
// limit variant, the good peer's link on eth1.
type floodReceiver struct {
	*bgpBenchReceiver
	podrouted bool
	socket    string       // podrouted's status socket
	router    *bird.Router // BIRD
	goodIndex int          // the good peer's link: 172.31.goodIndex.0/24
	flood     *floodResult
	limit     *limitResult
}

func (r *floodReceiver) goodAddr() string     { return fmt.Sprintf("172.31.%d.2", r.goodIndex) }
func (r *floodReceiver) goodPeerAddr() string { return fmt.Sprintf("172.31.%d.1", r.goodIndex) }

func newFloodLab(b *testing.B, bin string, limited bool) *floodLab {
	b.Helper()
	l := &floodLab{c: testenv.NewCleanup(b), run: netns.NewRunID(), limited: limited}
	dir, err := os.MkdirTemp("", l.run+"-flood-")
	if err != nil {
		b.Fatal(err)
	}
	l.dir = dir
	l.c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })
	b.Cleanup(func() {
		if !b.Failed() {
			return
		}
		for _, r := range []*floodReceiver{l.pod, l.bird} {
			if r != nil && r.proc != nil {
				if data, err := os.ReadFile(r.proc.LogPath); err == nil {
					lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
					b.Logf("%s log (last lines):\n%s", r.name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
				}
			}
		}
	})
	l.peer = benchNetns(b, l.c, l.run+"-f")
	// Links: podrouted 172.31.1.0/24, BIRD 172.31.2.0/24; limited:
	// podrouted 172.31.3.0/24 (flood) and .4 (good), BIRD .5 and .6.
	names, first, step, limit := [2]string{"pod", "bird"}, 1, 1, uint32(floodHighLimit)
	watch := bgpBenchSingle
	if limited {
		l.good = benchNetns(b, l.c, l.run+"-g")
		names, first, step, limit = [2]string{"lpod", "lbird"}, 3, 2, floodLowLimit
		// Every flood prefix that ever reaches the kernel is recorded.
		watch = floodRange
	}
	mk := func(name string, index int, asn uint32, proto int) *floodReceiver {
		r := &floodReceiver{bgpBenchReceiver: newBenchReceiver(b, l.c, l.run, l.peer, name, index, asn, proto, watch)}
		if limited {
			r.goodIndex = index + 1
			if err := netns.Veth(l.good, "to-"+name, r.ns, "eth1", 1500); err != nil {
				b.Fatal(err)
			}
			if err := errors.Join(l.good.AddAddr("to-"+name, r.goodPeerAddr()+"/24"), r.ns.AddAddr("eth1", r.goodAddr()+"/24")); err != nil {
				b.Fatal(err)
			}
		}
		return r
	}
	l.pod = mk(names[0], first, floodPodAS, bgpBenchProto)
	l.pod.podrouted = true
	l.bird = mk(names[1], first+step, floodBirdAS, bgpBenchBirdProto)
	l.pod.name, l.bird.name = "podrouted", "bird"

	// podrouted
	r := l.pod
	peers := []config.Peer{{Address: r.peerAddr(), ASN: floodPeerAS, Passive: true, MaxPrefixes: limit}}
	if limited {
		peers = append(peers, config.Peer{Address: r.goodPeerAddr(), ASN: goodPeerAS, Passive: true})
	}
	cfg := benchPodroutedConfig(r.bgpBenchReceiver, l.dir, peers...)
	if limited {
		cfg.ListenAddresses = append(cfg.ListenAddresses, r.goodAddr())
	}
	r.socket = cfg.GRPCSocket
	startPodroutedIn(b, l.c, r.bgpBenchReceiver, l.dir, bin, cfg, nil)

	// BIRD
	r = l.bird
	flood := bird.Neighbor{Name: "flood", Address: r.peerAddr(), ASN: floodPeerAS, LocalAddress: r.addr(),
		Passive: true, Hold: 9, Keepalive: 3, Export: "none"}
	neighbors := []bird.Neighbor{flood}
	if limited {
		// Smuggled into the channel block after `import all;`: BIRD counts
		// what the peer sent, before filters, as podrouted's limit does.
		neighbors[0].Import = fmt.Sprintf("all;\n\t\treceive limit %d action disable", floodLowLimit)
		neighbors = append(neighbors, bird.Neighbor{Name: "good", Address: r.goodPeerAddr(), ASN: goodPeerAS,
			LocalAddress: r.goodAddr(), Passive: true, Hold: 9, Keepalive: 3, Export: "none"})
	}
	r.router = startBirdIn(b, l.c, r.bgpBenchReceiver, l.dir, neighbors...)
	waitQuiet(b, []int{l.pod.proc.Pid(), l.bird.proc.Pid()})
	return l
}

// dial connects a raw peer from ns to a receiver (dialRaw).
func (l *floodLab) dial(b *testing.B, ns *netns.Namespace, from, to string, asn uint32) *bgppeer.Peer {
	b.Helper()
	return dialRaw(b, l.c, ns, from, to, asn)
}

// dialRaw connects a raw peer (IPv4 unicast, AS asn) from ns, local
// address from, to the receiver at to, port 179, and completes the
// handshake, retrying for 15 s; c closes it.
func dialRaw(b *testing.B, c *netns.Cleanup, ns *netns.Namespace, from, to string, asn uint32) *bgppeer.Peer {
	b.Helper()
	local := netip.MustParseAddr(from)
	var p *bgppeer.Peer
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ns.Do(func() error {
			var err error
			p, err = bgppeer.Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr(to), 179),
				bgppeer.Config{ASN: asn, RouterID: local, LocalAddr: local, Families: []bgppeer.Family{bgppeer.IPv4Unicast}})
			return err
		})
		if err == nil {
			err = p.Handshake(ctx)
			if err != nil {
				p.Close()
			}
		}
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("raw peer %s -> %s: %v", from, to, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Add("raw peer "+from, p.Close)
	return p
}

// floodMessages encodes the flood to r: floodN UPDATEs of one prefix each,
// next hop the peer's address on r's link.
func floodMessages(b *testing.B, r *floodReceiver) [][]byte {
	b.Helper()
	msgs, err := bgppeer.PackUpdates(bgppeer.Update{NextHop: netip.MustParseAddr(r.peerAddr()), ASPath: []uint32{floodPeerAS}},
		prefixRange(floodRange, floodN), 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	return msgs
}

// floodSender writes msgs to p in writes of floodBatchBytes, counting
// the messages written whole, until all are written or a write fails.
type floodSender struct {
	written         atomic.Int64
	start, finished time.Time
	err             error
	done            chan struct{}
}

func sendFlood(p *bgppeer.Peer, msgs [][]byte) *floodSender {
	s := &floodSender{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.start = time.Now()
		for i := 0; i < len(msgs); {
			n, size := 0, 0
			for i+n < len(msgs) && size+len(msgs[i+n]) <= floodBatchBytes {
				size += len(msgs[i+n])
				n++
			}
			if err := p.Send(msgs[i : i+n]...); err != nil {
				s.err = err
				break
			}
			i += n
			s.written.Store(int64(i))
		}
		s.finished = time.Now()
	}()
	return s
}

// wait waits up to limit for the sender to stop (each write has a 10 s
// deadline, so it stops by itself).
func (s *floodSender) wait(limit time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(limit):
		return false
	}
}

// retire stops a measured receiver and waits until the lab is idle.
func (l *floodLab) retire(b *testing.B, r *floodReceiver) {
	b.Helper()
	if err := r.proc.Stop(syscall.SIGKILL, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	waitQuiet(b, []int{l.bird.proc.Pid()})
}

type floodResult struct {
	n, inKernel              int
	done, polled             bool
	all, onWire, sendTook    time.Duration // from the first UPDATE on the wire; the sender's own time
	cpu, selfCPU             time.Duration
	hwmKiB, rssBeforeKiB     uint64
	anonPeakKiB, fileKiB     uint64 // RssAnon's sampled peak; RssFile at the end (memory_test.go)
	updatesIn                int
	sendErr                  error
	wireBroken, sentAllWhole bool
}

// measure floods r once (limit far above the flood) and reports it.
func (l *floodLab) measure(b *testing.B, r *floodReceiver) {
	if r.flood == nil {
		r.flood = l.floodOnce(b, r)
	}
	res := r.flood
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(res.all.Seconds(), "s")
	b.ReportMetric(float64(res.inKernel)/res.all.Seconds(), "routes/s")
	b.ReportMetric(res.onWire.Seconds(), "on-wire-s")
	b.ReportMetric(float64(res.inKernel), "in-kernel")
	b.ReportMetric(res.cpu.Seconds(), "cpu-s")
	b.ReportMetric(float64(res.hwmKiB)/1024, "peak-RSS-MiB")
}

func (l *floodLab) floodOnce(b *testing.B, r *floodReceiver) *floodResult {
	b.Helper()
	res := &floodResult{n: floodN}
	msgs := floodMessages(b, r)
	p := l.dial(b, l.peer, r.peerAddr(), r.addr(), floodPeerAS)
	pid := r.proc.Pid()
	waitQuiet(b, []int{pid})
	reached := r.kernel.arm(floodN)
	runtime.GC()
	gcPercent := debug.SetGCPercent(-1)
	cpu0, self0 := procCPU(pid), selfCPU()
	res.rssBeforeKiB = procStatusKiB(pid, "VmRSS")
	anon := sampleAnonPeak([]int{pid})
	defer anon.end()

	s := sendFlood(p, msgs)
	all, polled, err := r.waitRoutes(reached, floodN, floodBulkLimit)
	res.anonPeakKiB = anon.end()
	res.cpu, res.selfCPU = procCPU(pid)-cpu0, selfCPU()-self0
	res.hwmKiB, res.fileKiB = procStatusKiB(pid, "VmHWM"), procStatusKiB(pid, "RssFile")
	debug.SetGCPercent(gcPercent)
	res.polled = polled
	if err != nil {
		// Not fatal: how far it got is the figure, and the anchor still runs.
		b.Logf("%s: NOT DONE: %v", r.name, err)
		all = time.Now()
		res.inKernel, _ = countProtoRoutes(r.ns, r.proto)
	} else {
		res.done, res.inKernel = true, floodN
	}
	if !s.wait(30 * time.Second) {
		p.Close() // makes the blocked write fail
		s.wait(15 * time.Second)
	}
	w := r.wire.snapshot()
	res.all, res.onWire = all.Sub(w.firstUpdate), w.lastUpdate.Sub(w.firstUpdate)
	res.sendTook, res.sendErr = s.finished.Sub(s.start), s.err
	res.updatesIn, res.wireBroken, res.sentAllWhole = w.updates, w.broken, s.written.Load() == floodN
	if res.done {
		if c, err := countProtoRoutes(r.ns, r.proto); err != nil || c != floodN {
			b.Errorf("%s: ip route shows %d routes of protocol %d, want %d (%v)", r.name, c, r.proto, floodN, err)
		}
	}
	if w.broken {
		b.Logf("%s: the wire capture missed TCP segments; the first UPDATE's time may be late", r.name)
	}
	done := "all"
	if !res.done {
		done = fmt.Sprintf("NOT all: %d of", res.inKernel)
	}
	b.Logf("%s, flood of %d one-prefix UPDATEs, limit %d: %s %d in the kernel %.3f s after the first UPDATE on the wire (%.0f routes/s%s); last UPDATE on the wire after %.3f s (%d UPDATEs seen there); the peer's writes took %.3f s (%d written, error: %v); receiver CPU %.2f s (this test process %.2f s), VmRSS before %.1f MiB, VmHWM %.1f MiB (anonymous peak %.1f MiB, file-backed %.1f MiB)",
		r.name, floodN, floodHighLimit, done, floodN, res.all.Seconds(), float64(res.inKernel)/res.all.Seconds(),
		map[bool]string{true: ", completion polled at 50 ms", false: ""}[polled],
		res.onWire.Seconds(), res.updatesIn, res.sendTook.Seconds(), s.written.Load(), s.err,
		res.cpu.Seconds(), res.selfCPU.Seconds(), float64(res.rssBeforeKiB)/1024, float64(res.hwmKiB)/1024, float64(res.anonPeakKiB)/1024, float64(res.fileKiB)/1024)
	var curve []string
	for i, t := range r.kernel.progress() {
		if !t.IsZero() {
			curve = append(curve, fmt.Sprintf("%d%% %.0f", (i+1)*10, ms(t.Sub(w.firstUpdate))))
		}
	}
	b.Logf("%s: in the kernel, ms after the first UPDATE: %s", r.name, strings.Join(curve, ", "))
	return res
}

type limitResult struct {
	note                 bgppeer.Notification
	gotNote              bool
	noteAfter            time.Duration // first UPDATE on the wire -> NOTIFICATION read by the peer
	pastLimitToNote      time.Duration // the UPDATE past the limit on the wire -> NOTIFICATION
	writtenAtNote        int           // UPDATEs the peer had written into its socket
	onWireAtNote         int           // UPDATEs that had reached the receiver's interface
	everInKernel         int           // distinct flood prefixes ever in the kernel
	pastLimitInKernel    int           // of those, sent after the limit-th
	leftKernel           time.Duration // NOTIFICATION -> none of the flood's routes in the kernel
	maxReceivedShown     uint64        // podrouted's status, polled during the flood
	statusCalls          int
	statusMax            time.Duration
	goodUp, goodSame     bool
	goodState, goodSince string
	goodRoutes           int
	goodPeerOutcome      string
	cpu                  time.Duration
	hwmKiB               uint64
}

// measureLimit floods r's limited peer once, with the good peer up, and
// reports it.
func (l *floodLab) measureLimit(b *testing.B, r *floodReceiver) {
	if r.limit == nil {
		r.limit = l.limitOnce(b, r)
	}
	res := r.limit
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(res.everInKernel), "flood-ever-in-kernel")
	b.ReportMetric(float64(res.pastLimitInKernel), "past-limit-in-kernel")
	b.ReportMetric(float64(res.writtenAtNote), "written-at-note")
	b.ReportMetric(float64(res.onWireAtNote), "on-wire-at-note")
	b.ReportMetric(ms(res.pastLimitToNote), "past-limit-to-note-ms")
	b.ReportMetric(float64(boolInt(res.goodUp && res.goodSame)), "good-untouched")
	b.ReportMetric(res.cpu.Seconds(), "cpu-s")
	b.ReportMetric(float64(res.hwmKiB)/1024, "peak-RSS-MiB")
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// goodSession is the receiver's view of the good peer's session: its
// state and since when.
func (l *floodLab) goodSession(r *floodReceiver) (state, since string, err error) {
	if r.podrouted {
		resp, err := statusOnce(r.socket)
		if err != nil {
			return "", "", err
		}
		for _, p := range resp.GetPeers() {
			if p.GetAddress() == r.goodPeerAddr() {
				return p.GetState(), strconv.FormatInt(p.GetStateSinceUnix(), 10), nil
			}
		}
		return "", "", fmt.Errorf("no peer %s in podrouted's status", r.goodPeerAddr())
	}
	protos, err := r.router.Protocols()
	if err != nil {
		return "", "", err
	}
	p, ok := protos["good"]
	if !ok {
		return "", "", errors.New("no protocol good in BIRD")
	}
	return p.BGPState, p.Since, nil
}

func statusOnce(socket string) (*api.GetStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := api.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return api.NewStatusClient(conn).GetStatus(ctx, &api.GetStatusRequest{})
}

// statusPoll polls podrouted's status every 50 ms and keeps the largest
// RECEIVED shown for peer, and the latencies.
type statusPoll struct {
	stop, stopped chan struct{}
	mu            sync.Mutex
	maxReceived   uint64
	lat           []time.Duration
	errs          int
}

func pollStatus(b *testing.B, c *netns.Cleanup, socket, peer string) *statusPoll {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn, err := api.Dial(ctx, socket)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	client := api.NewStatusClient(conn)
	s := &statusPoll{stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		defer conn.Close()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t0 := time.Now()
			resp, err := client.GetStatus(ctx, &api.GetStatusRequest{})
			took := time.Since(t0)
			cancel()
			s.mu.Lock()
			s.lat = append(s.lat, took)
			if err != nil {
				s.errs++
			}
			for _, p := range resp.GetPeers() {
				if p.GetAddress() == peer {
					s.maxReceived = max(s.maxReceived, p.GetReceived())
				}
			}
			s.mu.Unlock()
		}
	}()
	c.Add("status poller", func() error { s.halt(); return nil })
	return s
}

func (s *statusPoll) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
}

func (l *floodLab) limitOnce(b *testing.B, r *floodReceiver) *limitResult {
	b.Helper()
	res := &limitResult{}
	pid := r.proc.Pid()

	// The good peer first: Established, its routes in the kernel.
	good := l.dial(b, l.good, r.goodPeerAddr(), r.goodAddr(), goodPeerAS)
	reached := r.kernel.arm(goodN)
	goodMsgs, err := bgppeer.PackUpdates(bgppeer.Update{NextHop: netip.MustParseAddr(r.goodPeerAddr()), ASPath: []uint32{goodPeerAS}},
		prefixRange(goodRange, goodN), 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := good.Send(append(goodMsgs, bgppeer.EndOfRIB(bgppeer.IPv4Unicast))...); err != nil {
		b.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(bgpBenchStepLimit):
		b.Fatalf("%s: %d of the good peer's %d routes in the kernel after %v", r.name, r.kernel.count(), goodN, bgpBenchStepLimit)
	}
	var state0, since0 string
	waitTime(b, r.name+": the good session Established", func() time.Time {
		state0, since0, err = l.goodSession(r)
		if err == nil && state0 == "Established" {
			return time.Now()
		}
		return time.Time{}
	})

	// The flood.
	msgs := floodMessages(b, r)
	p := l.dial(b, l.peer, r.peerAddr(), r.addr(), floodPeerAS)
	r.wire.keepUpdateTimes()
	waitQuiet(b, []int{pid})
	var poll *statusPoll
	if r.podrouted {
		poll = pollStatus(b, l.c, r.socket, r.peerAddr())
	}
	cpu0 := procCPU(pid)
	s := sendFlood(p, msgs)
	var writtenAtNote atomic.Int64
	noted := make(chan struct{})
	go func() {
		defer close(noted)
		p.WaitNotification(floodNoteLimit)
		writtenAtNote.Store(s.written.Load())
	}()
	<-noted
	st := p.State()
	res.note, res.gotNote = p.FirstNotification()
	res.writtenAtNote = int(writtenAtNote.Load())
	if !s.wait(30 * time.Second) {
		p.Close()
		s.wait(15 * time.Second)
	}
	if !res.gotNote {
		b.Errorf("%s: no NOTIFICATION within %v of the flood (%s); %d UPDATEs written", r.name, floodNoteLimit, p.Outcome(), s.written.Load())
	} else if res.note.Code != 6 || res.note.Subcode != 1 {
		b.Errorf("%s: NOTIFICATION %s, want Cease / Maximum Number of Prefixes Reached (6/1)", r.name, res.note)
	}
	// The flood's routes leave the kernel with the session.
	left := time.Now()
	_, gone := pollUntil(10*time.Millisecond, 20*time.Second, func() bool {
		n, err := countRoutesIn(r.ns, r.proto, floodRange)
		return err == nil && n == 0
	})
	if gone {
		res.leftKernel = time.Since(st.NotificationAt)
	} else {
		res.leftKernel = -1
		b.Errorf("%s: the flood's routes still in the kernel %v after the NOTIFICATION", r.name, time.Since(left).Round(time.Millisecond))
	}
	res.cpu, res.hwmKiB = procCPU(pid)-cpu0, procStatusKiB(pid, "VmHWM")
	if poll != nil {
		poll.halt()
		poll.mu.Lock()
		res.maxReceivedShown, res.statusCalls = poll.maxReceived, len(poll.lat)
		if len(poll.lat) > 0 {
			res.statusMax = slices.Max(poll.lat)
		}
		if poll.errs > 0 {
			b.Errorf("%s: %d status calls failed during the flood", r.name, poll.errs)
		}
		poll.mu.Unlock()
	}
	w := r.wire.snapshot()
	if res.gotNote {
		res.noteAfter = st.NotificationAt.Sub(w.firstUpdate)
		res.onWireAtNote = r.wire.updatesBy(st.NotificationAt)
		if past := r.wire.updateArrival(floodLowLimit + 1); !past.IsZero() {
			res.pastLimitToNote = st.NotificationAt.Sub(past)
		}
	}
	for _, pfx := range r.kernel.watchedAdded() {
		if i := floodIndex(pfx); i >= 0 {
			res.everInKernel++
			if i >= floodLowLimit {
				res.pastLimitInKernel++
			}
		}
	}
	// The good session.
	res.goodState, res.goodSince, err = l.goodSession(r)
	if err != nil {
		b.Errorf("%s: the good session: %v", r.name, err)
	}
	res.goodUp, res.goodSame = res.goodState == "Established", res.goodSince == since0
	res.goodRoutes, _ = countRoutesIn(r.ns, r.proto, goodRange)
	gs := good.State()
	res.goodPeerOutcome = good.Outcome()
	if gs.Closed || len(gs.Notifications) > 0 {
		res.goodUp = false
	}
	if !res.goodUp || !res.goodSame || res.goodRoutes != goodN {
		b.Errorf("%s: the good session was touched: state %s since %s (before: %s since %s), %d of its %d routes in the kernel, its peer: %s",
			r.name, res.goodState, res.goodSince, state0, since0, res.goodRoutes, goodN, res.goodPeerOutcome)
	}
	if res.everInKernel > floodLowLimit || res.pastLimitInKernel > 0 {
		b.Errorf("%s: %d of the flood's prefixes reached the kernel (%d sent past the limit), limit %d",
			r.name, res.everInKernel, res.pastLimitInKernel, floodLowLimit)
	}
	if w.broken {
		b.Logf("%s: the wire capture missed TCP segments; the counts on the wire may be short", r.name)
	}
	shown := ""
	if r.podrouted {
		shown = fmt.Sprintf("; largest RECEIVED in podrouted's status during the flood %d (%d calls every 50 ms, slowest %s)",
			res.maxReceivedShown, res.statusCalls, res.statusMax.Round(10*time.Microsecond))
	}
	b.Logf("%s, limit %d, flood of %d one-prefix UPDATEs: %s %.1f ms after the first UPDATE on the wire; by then the peer had written %d UPDATEs and %d had reached the receiver's interface; the UPDATE past the limit (the %d-th) arrived %.1f ms before the NOTIFICATION; %d of the flood's prefixes ever reached the kernel (%d sent past the limit), all gone %.0f ms after the NOTIFICATION%s; receiver CPU %.2f s, VmHWM %.1f MiB",
		r.name, floodLowLimit, floodN, noteText(res), ms(res.noteAfter), res.writtenAtNote, res.onWireAtNote, floodLowLimit+1, ms(res.pastLimitToNote),
		res.everInKernel, res.pastLimitInKernel, ms(res.leftKernel), shown, res.cpu.Seconds(), float64(res.hwmKiB)/1024)
	b.Logf("%s: the other session: %s since %s (before the flood: %s since %s), %d of its %d routes in the kernel, its peer: %s",
		r.name, res.goodState, res.goodSince, state0, since0, res.goodRoutes, goodN, res.goodPeerOutcome)
	return res
}

func noteText(res *limitResult) string {
	if !res.gotNote {
		return "no NOTIFICATION"
	}
	return "NOTIFICATION " + res.note.String()
}

// pollUntil calls cond every interval until it is true or limit passed.
func pollUntil(interval, limit time.Duration, cond func() bool) (time.Duration, bool) {
	t0 := time.Now()
	for {
		if cond() {
			return time.Since(t0), true
		}
		if time.Since(t0) > limit {
			return time.Since(t0), false
		}
		time.Sleep(interval)
	}
}

// countRoutesIn counts the IPv4 routes of protocol proto in the main
// table inside prefix.
func countRoutesIn(ns *netns.Namespace, proto int, prefix netip.Prefix) (int, error) {
	out, err := ns.IP("-4", "route", "show", "table", "main", "proto", strconv.Itoa(proto), "root", prefix.String())
	if err != nil {
		return 0, err
	}
	return strings.Count(string(out), "\n"), nil
}

// floodSummary prints each variant as one table with podrouted's ratio to
// BIRD, in a sub-benchmark of its own: Go keeps at most 9 lines of a
// benchmark's log.
func floodSummary(b *testing.B, high, low [2]*floodReceiver) {
	b.Run(fmt.Sprintf("limit=%d", floodHighLimit), func(b *testing.B) { floodTable(b, high) })
	b.Run(fmt.Sprintf("limit=%d", floodLowLimit), func(b *testing.B) { limitTable(b, low) })
}

func ratio(a, c float64) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/c)
}

// logTable logs rows (the first is the header) as aligned columns.
func logTable(b *testing.B, rows [][4]string) {
	w := 0
	for _, r := range rows {
		w = max(w, len([]rune(r[0])))
	}
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		lines = append(lines, strings.TrimRight(fmt.Sprintf("%-*s  %-32s  %-32s  %s", w, r[0], r[1], r[2], r[3]), " "))
	}
	b.Log(strings.Join(lines, "\n"))
}

func floodTable(b *testing.B, rcv [2]*floodReceiver) {
	b.ReportMetric(0, "ns/op")
	p, q := rcv[0], rcv[1]
	if p == nil || q == nil || p.flood == nil || q.flood == nil {
		b.Skip("no results (the flood sub-benchmarks did not run)")
	}
	pf, qf := p.flood, q.flood
	done := func(f *floodResult) string {
		if f.done {
			return fmt.Sprintf("%.3f s", f.all.Seconds())
		}
		return fmt.Sprintf("NOT DONE (%d after %.0f s)", f.inKernel, f.all.Seconds())
	}
	met := "met"
	if !pf.done || pf.all > floodTarget {
		met = "NOT met"
	}
	rows := [][4]string{
		{fmt.Sprintf("flood: %dk one-prefix UPDATEs, limit %d (one run)", floodN/1000, floodHighLimit), "podrouted", "BIRD 2", "podrouted/BIRD"},
		{"first UPDATE on the wire -> all in the kernel", done(pf), done(qf), ratio(pf.all.Seconds(), qf.all.Seconds())},
		{"  routes/s", fmt.Sprintf("%.0f", float64(pf.inKernel)/pf.all.Seconds()), fmt.Sprintf("%.0f", float64(qf.inKernel)/qf.all.Seconds()), ratio(float64(pf.inKernel)/pf.all.Seconds(), float64(qf.inKernel)/qf.all.Seconds())},
		{"  last UPDATE on the wire, s after the first", fmt.Sprintf("%.3f", pf.onWire.Seconds()), fmt.Sprintf("%.3f", qf.onWire.Seconds()), ratio(pf.onWire.Seconds(), qf.onWire.Seconds())},
		{"receiver CPU seconds", fmt.Sprintf("%.2f", pf.cpu.Seconds()), fmt.Sprintf("%.2f", qf.cpu.Seconds()), ratio(pf.cpu.Seconds(), qf.cpu.Seconds())},
		{"peak RSS (VmHWM)", fmt.Sprintf("%.1f MiB", float64(pf.hwmKiB)/1024), fmt.Sprintf("%.1f MiB", float64(qf.hwmKiB)/1024), ratio(float64(pf.hwmKiB), float64(qf.hwmKiB))},
		{"  of it: anonymous peak", fmt.Sprintf("%.1f MiB", float64(pf.anonPeakKiB)/1024), fmt.Sprintf("%.1f MiB", float64(qf.anonPeakKiB)/1024), ratio(float64(pf.anonPeakKiB), float64(qf.anonPeakKiB))},
		{"  file-backed (binary, libraries)", fmt.Sprintf("%.1f MiB", float64(pf.fileKiB)/1024), fmt.Sprintf("%.1f MiB", float64(qf.fileKiB)/1024), ratio(float64(pf.fileKiB), float64(qf.fileKiB))},
		{fmt.Sprintf("target: all in podrouted's kernel within %v", floodTarget), met, "", ""},
	}
	logTable(b, rows)
	b.ReportMetric(pf.all.Seconds()/qf.all.Seconds(), "s-ratio")
	b.ReportMetric(pf.cpu.Seconds()/qf.cpu.Seconds(), "cpu-ratio")
	b.ReportMetric(float64(pf.hwmKiB)/float64(qf.hwmKiB), "RSS-ratio")
}

func limitTable(b *testing.B, rcv [2]*floodReceiver) {
	b.ReportMetric(0, "ns/op")
	p, q := rcv[0], rcv[1]
	if p == nil || q == nil || p.limit == nil || q.limit == nil {
		b.Skip("no results (the limit sub-benchmarks did not run)")
	}
	pl, ql := p.limit, q.limit
	// "At the limit, not seconds later": by count (nothing past the limit
	// reaches the kernel) and in time (the NOTIFICATION within a second of
	// the UPDATE past the limit reaching the interface).
	var missed []string
	if !pl.gotNote || pl.note.Code != 6 || pl.note.Subcode != 1 {
		missed = append(missed, "no Cease 6/1")
	}
	if pl.everInKernel > floodLowLimit || pl.pastLimitInKernel > 0 {
		missed = append(missed, "past the limit in the kernel")
	}
	if pl.pastLimitToNote > floodNoteTarget {
		missed = append(missed, fmt.Sprintf("NOTIFICATION %.1f s after UPDATE %d arrived", pl.pastLimitToNote.Seconds(), floodLowLimit+1))
	}
	if !pl.goodUp || !pl.goodSame || pl.goodRoutes != goodN {
		missed = append(missed, "the good session touched")
	}
	met := "met"
	if len(missed) > 0 {
		met = "NOT met (" + strings.Join(missed, "; ") + ")"
	}
	rows := [][4]string{
		{fmt.Sprintf("flood, limit %d, a good peer up (one run)", floodLowLimit), "podrouted", "BIRD 2", "podrouted/BIRD"},
		{"NOTIFICATION; flood prefixes ever in the kernel (past the limit)", noteCell(pl) + fmt.Sprintf("; %d (%d)", pl.everInKernel, pl.pastLimitInKernel), noteCell(ql) + fmt.Sprintf("; %d (%d)", ql.everInKernel, ql.pastLimitInKernel), ""},
		{"UPDATEs written by the peer / on the receiver's wire at the NOTIFICATION", fmt.Sprintf("%d / %d", pl.writtenAtNote, pl.onWireAtNote), fmt.Sprintf("%d / %d", ql.writtenAtNote, ql.onWireAtNote), ""},
		{fmt.Sprintf("UPDATE %d on the wire -> NOTIFICATION", floodLowLimit+1), fmt.Sprintf("%.1f ms", ms(pl.pastLimitToNote)), fmt.Sprintf("%.1f ms", ms(ql.pastLimitToNote)), ratio(ms(pl.pastLimitToNote), ms(ql.pastLimitToNote))},
		{"first UPDATE on the wire -> NOTIFICATION", fmt.Sprintf("%.1f ms", ms(pl.noteAfter)), fmt.Sprintf("%.1f ms", ms(ql.noteAfter)), ratio(ms(pl.noteAfter), ms(ql.noteAfter))},
		{"NOTIFICATION -> the flood's routes gone from the kernel", fmt.Sprintf("%.0f ms", ms(pl.leftKernel)), fmt.Sprintf("%.0f ms", ms(ql.leftKernel)), ""},
		{"the good session", goodText(pl), goodText(ql), ""},
		{"receiver CPU seconds, flood start -> its routes gone", fmt.Sprintf("%.2f", pl.cpu.Seconds()), fmt.Sprintf("%.2f", ql.cpu.Seconds()), ratio(pl.cpu.Seconds(), ql.cpu.Seconds())},
		{"target: torn down at the limit, not seconds later; others untouched", met, "", ""},
	}
	logTable(b, rows)
	b.ReportMetric(float64(pl.everInKernel), "flood-in-kernel")
	b.ReportMetric(ms(pl.pastLimitToNote)/ms(ql.pastLimitToNote), "past-limit-to-note-ratio")
	b.ReportMetric(ms(pl.noteAfter)/ms(ql.noteAfter), "first-to-note-ratio")
}

// noteCell is the NOTIFICATION in a table cell.
func noteCell(res *limitResult) string {
	switch {
	case !res.gotNote:
		return "none"
	case res.note.Code == 6 && res.note.Subcode == 1:
		return "6/1 Cease max-prefix"
	}
	return fmt.Sprintf("%d/%d (want 6/1)", res.note.Code, res.note.Subcode)
}

func goodText(res *limitResult) string {
	if res.goodUp && res.goodSame && res.goodRoutes == goodN {
		return fmt.Sprintf("untouched, %d/%d routes", res.goodRoutes, goodN)
	}
	return fmt.Sprintf("TOUCHED: %s, %d/%d routes", res.goodState, res.goodRoutes, goodN)
}
