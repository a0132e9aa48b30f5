package bgpbench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/testbed/netns"
)

// bgpWire reassembles the BGP messages a peer sends to a receiver, from an
// AF_PACKET socket on the receiver's interface, with kernel receive
// timestamps.
type bgpWire struct {
	sock  *pollSocket
	peer  netip.Addr
	watch netip.Prefix

	mu     sync.Mutex
	stream []byte // bytes of the current connection not yet parsed
	next   uint32 // next expected sequence number
	ahead  []aheadSegment
	inConn bool
	state  bgpWireState
	ann    map[netip.Prefix]time.Time
	wdr    map[netip.Prefix]time.Time
	// keepTimes keeps the arrival time of every UPDATE of the current
	// connection in times (UnixNano), for floods (see keepUpdateTimes).
	keepTimes bool
	times     []int64
}

// bgpWireState is what the wire has shown of the current connection.
type bgpWireState struct {
	open, established, firstUpdate, eor time.Time
	lastUpdate                          time.Time
	updates, nlri                       int
	reordered                           int  // segments that arrived before one that precedes them
	broken                              bool // a gap in the captured stream
}

func startBGPWire(ns *netns.Namespace, ifName string, peer netip.Addr, watch netip.Prefix) (*bgpWire, error) {
	w := &bgpWire{peer: peer, watch: watch, ann: map[netip.Prefix]time.Time{}, wdr: map[netip.Prefix]time.Time{}}
	sock, err := openPollSocket(ns, unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)), func(fd int) error {
		ifc, err := net.InterfaceByName(ifName) // inside ns: Do switched the thread
		if err != nil {
			return err
		}
		return errors.Join(
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20),
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
			unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifc.Index}))
	})
	if err != nil {
		return nil, fmt.Errorf("wire capture in %s: %w", ns.Name, err)
	}
	w.sock = sock
	buf := make([]byte, 256<<10)
	oob := make([]byte, 256)
	go sock.run(func(fd int) error {
		n, oobn, flags, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.ENOBUFS) {
			w.mu.Lock()
			w.state.broken = true
			w.mu.Unlock()
			return nil
		}
		if err != nil {
			return err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			return nil
		}
		w.received(buf[:n], oob[:oobn], flags)
		return nil
	})
	return w, nil
}

// received handles one captured packet with its control messages.
func (w *bgpWire) received(p, oob []byte, flags int) {
	ts := time.Now() // if the kernel timestamp is missing
	if cmsgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, c := range cmsgs {
			if c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_TIMESTAMPNS && len(c.Data) >= 16 {
				ts = time.Unix(int64(binary.NativeEndian.Uint64(c.Data[0:8])), int64(binary.NativeEndian.Uint64(c.Data[8:16])))
			}
		}
	}
	w.packet(p, flags&unix.MSG_TRUNC != 0, ts)
}

// packet handles one IPv4 packet (possibly a GSO super-packet).
func (w *bgpWire) packet(p []byte, truncated bool, ts time.Time) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
		return
	}
	if src, _ := netip.AddrFromSlice(p[12:16]); src != w.peer {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	end := int(binary.BigEndian.Uint16(p[2:4]))
	if end == 0 || end > len(p) {
		end = len(p)
	}
	if ihl+20 > end {
		return
	}
	tcp := p[ihl:end]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return
	}
	seq, syn := binary.BigEndian.Uint32(tcp[4:8]), tcp[13]&0x02 != 0
	payload := tcp[doff:]
	w.mu.Lock()
	defer w.mu.Unlock()
	if truncated {
		w.state.broken = true
	}
	if syn {
		// A new connection: what came before is history.
		w.inConn, w.next, w.stream, w.ahead = true, seq+1, w.stream[:0], nil
		w.state = bgpWireState{}
		w.times = w.times[:0]
		return
	}
	if !w.inConn || len(payload) == 0 {
		return
	}
	if d := int32(seq - w.next); d > 0 {
		// Ahead of the stream: a segment before it is missing. On a veth
		// that is mostly reordering (the sender's segments go through
		// the backlog of whichever CPU sent them), so it waits for the
		// gap to be filled; a message it completes counts as arrived
		// when the gap is filled. Too much waiting means a segment was
		// not captured: resynchronise here.
		w.state.reordered++
		w.ahead = append(w.ahead, aheadSegment{seq: seq, data: slices.Clone(payload)})
		if len(w.ahead) <= maxAhead {
			return
		}
		w.state.broken = true
		w.stream, w.next, w.ahead = w.stream[:0], seq, w.ahead[:0]
	}
	w.appendInOrder(seq, payload)
	// The segments that were waiting for this one.
	for applied := true; applied && len(w.ahead) > 0; {
		applied = false
		for i, a := range w.ahead {
			if int32(a.seq-w.next) <= 0 {
				w.appendInOrder(a.seq, a.data)
				w.ahead = slices.Delete(w.ahead, i, i+1)
				applied = true
				break
			}
		}
	}
	rest := w.stream
	for len(rest) >= 19 {
		l := int(binary.BigEndian.Uint16(rest[16:18]))
		if l < 19 || !bytes.Equal(rest[:16], bgpMarker) {
			w.state.broken = true
			rest = nil
			break
		}
		if len(rest) < l {
			break
		}
		w.message(rest[18], rest[19:l], ts)
		rest = rest[l:]
	}
	w.stream = append(w.stream[:0], rest...)
}

// maxAhead is how many segments may wait for a missing one before it
// counts as lost.
const maxAhead = 256

// aheadSegment is a segment that arrived before one that precedes it.
type aheadSegment struct {
	seq  uint32
	data []byte
}

// appendInOrder appends the part of a segment at seq that is new to the
// stream (none for a retransmission). seq must not be ahead of w.next.
func (w *bgpWire) appendInOrder(seq uint32, payload []byte) {
	if d := int32(w.next - seq); d > 0 {
		if int(d) >= len(payload) {
			return // a retransmission
		}
		payload = payload[d:]
	}
	w.next += uint32(len(payload))
	w.stream = append(w.stream, payload...)
}

var bgpMarker = bytes.Repeat([]byte{0xff}, 16)

func (w *bgpWire) message(typ byte, body []byte, ts time.Time) {
	st := &w.state
	switch typ {
	case 1: // OPEN
		st.open = ts
	case 4: // KEEPALIVE
		if !st.open.IsZero() && st.established.IsZero() {
			st.established = ts
		}
	case 2: // UPDATE
		if len(body) < 4 {
			return
		}
		wl := int(binary.BigEndian.Uint16(body[0:2]))
		if 2+wl+2 > len(body) {
			return
		}
		withdrawn := body[2 : 2+wl]
		al := int(binary.BigEndian.Uint16(body[2+wl : 4+wl]))
		if 4+wl+al > len(body) {
			return
		}
		nlri := body[4+wl+al:]
		if wl == 0 && al == 0 && len(nlri) == 0 {
			if st.eor.IsZero() {
				st.eor = ts
			}
			return
		}
		st.updates++
		if st.firstUpdate.IsZero() {
			st.firstUpdate = ts
		}
		st.lastUpdate = ts
		if w.keepTimes {
			w.times = append(w.times, ts.UnixNano())
		}
		st.nlri += w.prefixes(nlri, w.ann, ts)
		w.prefixes(withdrawn, w.wdr, ts)
	}
}

// prefixes walks an NLRI field, records the watched prefixes in into and
// returns how many prefixes it holds.
func (w *bgpWire) prefixes(b []byte, into map[netip.Prefix]time.Time, ts time.Time) int {
	n := 0
	for len(b) > 0 {
		bits := int(b[0])
		size := (bits + 7) / 8
		if bits > 32 || 1+size > len(b) {
			return n
		}
		var a [4]byte
		copy(a[:], b[1:1+size])
		if p := netip.PrefixFrom(netip.AddrFrom4(a), bits); w.watch.Contains(p.Addr()) {
			into[p] = ts
		}
		n++
		b = b[1+size:]
	}
	return n
}

// reset forgets the connection seen so far (and whether the capture
// missed segments of it): the peer's next SYN starts the next one.
func (w *bgpWire) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inConn, w.stream, w.ahead, w.state, w.times = false, w.stream[:0], nil, bgpWireState{}, w.times[:0]
}

// socketDrops is how many packets the capture socket dropped (its buffer
// full: AF_PACKET drops silently) since the last call.
func (w *bgpWire) socketDrops() (uint32, error) {
	var st *unix.TpacketStats
	var gerr error
	if err := w.sock.rc.Control(func(fd uintptr) {
		st, gerr = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, gerr
	}
	return st.Drops, nil
}

func (w *bgpWire) snapshot() bgpWireState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

func (w *bgpWire) announced(p netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ann[p]
}

func (w *bgpWire) withdrawn(p netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wdr[p]
}

// keepUpdateTimes makes the capture keep the arrival time of every UPDATE
// (announcing or withdrawing) from now on, for updateArrival and
// updatesBy: 8 bytes per UPDATE.
func (w *bgpWire) keepUpdateTimes() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.keepTimes = true
}

// updateArrival is when the k-th UPDATE (1-based) of the connection
// reached the interface, if it has and its time was kept.
func (w *bgpWire) updateArrival(k int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k < 1 || k > len(w.times) {
		return time.Time{}
	}
	return time.Unix(0, w.times[k-1])
}

// updatesBy counts the UPDATEs of the connection that had reached the
// interface by t (of those whose times were kept).
func (w *bgpWire) updatesBy(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := t.UnixNano()
	// Kernel receive timestamps of one socket are in order.
	return sort.Search(len(w.times), func(i int) bool { return w.times[i] > n })
}

func (w *bgpWire) close() error { return w.sock.close() }

// htons converts v to network byte order, as sockaddr_ll and socket(2)
// want the protocol.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// TestBGPWireReordered feeds the reassembly segments out of order, as a
// veth delivers them when the sender's segments pass different CPUs: a
// message counts as arrived when its last missing byte does, and nothing
// is lost or marked broken.
func TestBGPWireReordered(t *testing.T) {
	peer := netip.MustParseAddr("172.31.1.1")
	w := &bgpWire{peer: peer, watch: netip.MustParsePrefix("11.240.0.0/12"),
		ann: map[netip.Prefix]time.Time{}, wdr: map[netip.Prefix]time.Time{}}
	msg := func(typ byte, body []byte) []byte {
		m := append(slices.Clone(bgpMarker), 0, 0, typ)
		binary.BigEndian.PutUint16(m[16:18], uint16(19+len(body)))
		return append(m, body...)
	}
	open := msg(1, make([]byte, 10))
	keepalive := msg(4, nil)
	// One UPDATE announcing 11.240.1.0/24 (no attributes: the capture
	// does not read them), then End-of-RIB.
	update := msg(2, []byte{0, 0, 0, 0, 24, 11, 240, 1})
	eor := msg(2, []byte{0, 0, 0, 0})
	stream := slices.Concat(open, keepalive, update, eor)
	const isn = 1000
	segment := func(seq uint32, syn bool, payload []byte) []byte {
		p := make([]byte, 40, 40+len(payload))
		p[0], p[9] = 0x45, 6
		binary.BigEndian.PutUint16(p[2:4], uint16(40+len(payload)))
		copy(p[12:16], peer.AsSlice())
		binary.BigEndian.PutUint32(p[24:28], seq)
		p[32] = 5 << 4
		if syn {
			p[33] = 0x02
		}
		return append(p, payload...)
	}
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	w.packet(segment(isn, true, nil), false, at(0))
	// Segments: [open+keepalive] [first half of the UPDATE] [rest of the
	// UPDATE + End-of-RIB], the middle one arriving last.
	a, c := len(open)+len(keepalive), len(open)+len(keepalive)+len(update)/2
	w.packet(segment(isn+1, false, stream[:a]), false, at(1))
	w.packet(segment(isn+1+uint32(c), false, stream[c:]), false, at(2))
	if st := w.snapshot(); !st.eor.IsZero() || st.updates != 0 {
		t.Fatalf("messages parsed across a gap: %+v", st)
	}
	w.packet(segment(isn+1+uint32(a), false, stream[a:c]), false, at(3))
	// A retransmission of what was seen changes nothing.
	w.packet(segment(isn+1, false, stream[:c]), false, at(4))
	st := w.snapshot()
	if st.broken || st.reordered != 1 || st.updates != 1 || st.nlri != 1 {
		t.Fatalf("state %+v, want 1 UPDATE of 1 prefix, 1 reordered segment, not broken", st)
	}
	if !st.established.Equal(at(1)) || !st.eor.Equal(at(3)) {
		t.Errorf("Established at %v, End-of-RIB at %v; want %v and %v", st.established, st.eor, at(1), at(3))
	}
	if got := w.announced(netip.MustParsePrefix("11.240.1.0/24")); !got.Equal(at(3)) {
		t.Errorf("11.240.1.0/24 announced at %v, want %v (when the gap was filled)", got, at(3))
	}
}
