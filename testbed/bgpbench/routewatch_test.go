package bgpbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/testbed/netns"
)

// routeWatch counts, from netlink notifications in one namespace, the
// IPv4 destinations of one route protocol in the main table, and
// timestamps the routes of a watched range as they come and go.
type routeWatch struct {
	sock  *pollSocket
	proto uint8
	watch netip.Prefix

	mu       sync.Mutex
	have     map[uint64]struct{}
	firstAt  time.Time
	target   int
	reached  chan time.Time
	marks    [10]time.Time // when the count reached 10%, 20%, ... of target
	overflow bool
	msgs     [2]int // RTM_NEWROUTE, RTM_DELROUTE of the protocol seen since arm
	adds     map[netip.Prefix]time.Time
	dels     map[netip.Prefix]time.Time
}

func startRouteWatch(ns *netns.Namespace, proto int, watch netip.Prefix) (*routeWatch, error) {
	w := &routeWatch{proto: uint8(proto), watch: watch, have: map[uint64]struct{}{},
		adds: map[netip.Prefix]time.Time{}, dels: map[netip.Prefix]time.Time{}}
	sock, err := openPollSocket(ns, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE, func(fd int) error {
		return errors.Join(
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20),
			unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_ROUTE}))
	})
	if err != nil {
		return nil, fmt.Errorf("route watch in %s: %w", ns.Name, err)
	}
	w.sock = sock
	// recvmmsg takes up to 256 queued notifications per system call.
	const batch, size = 256, 8 << 10
	bufs := make([]byte, batch*size)
	hdrs := make([]mmsghdr, batch)
	iovs := make([]unix.Iovec, batch)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*size]
		iovs[i].SetLen(size)
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	go sock.run(func(fd int) error {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), batch,
			unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.ENOBUFS:
			w.mu.Lock()
			w.overflow = true
			w.mu.Unlock()
			return nil
		case errno != 0:
			return errno
		}
		now := time.Now()
		for i := range int(n) {
			w.datagram(bufs[i*size:i*size+int(hdrs[i].n)], now)
		}
		return nil
	})
	return w, nil
}

// mmsghdr is struct mmsghdr of recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// datagram handles one datagram of netlink messages.
func (w *routeWatch) datagram(m []byte, now time.Time) {
	for len(m) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(m[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(m) {
			return
		}
		if typ := binary.NativeEndian.Uint16(m[4:6]); typ == unix.RTM_NEWROUTE || typ == unix.RTM_DELROUTE {
			w.route(typ == unix.RTM_NEWROUTE, m[unix.NLMSG_HDRLEN:l], now)
		}
		m = m[min((l+3)&^3, len(m)):]
	}
}

func (w *routeWatch) route(add bool, m []byte, now time.Time) {
	if len(m) < unix.SizeofRtMsg || m[0] != unix.AF_INET || m[5] != w.proto {
		return
	}
	dstLen, table := m[1], uint32(m[4])
	var dst [4]byte
	for a := m[unix.SizeofRtMsg:]; len(a) >= 4; {
		al, at := int(binary.NativeEndian.Uint16(a[0:2])), binary.NativeEndian.Uint16(a[2:4])
		if al < 4 || al > len(a) {
			break
		}
		switch {
		case at == unix.RTA_DST && al >= 8:
			copy(dst[:], a[4:8])
		case at == unix.RTA_TABLE && al >= 8:
			table = binary.NativeEndian.Uint32(a[4:8])
		}
		a = a[min((al+3)&^3, len(a)):]
	}
	if table != unix.RT_TABLE_MAIN {
		return
	}
	key := uint64(binary.BigEndian.Uint32(dst[:]))<<8 | uint64(dstLen)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, had := w.have[key]
	if add {
		w.msgs[0]++
	} else {
		w.msgs[1]++
	}
	switch {
	case add && !had:
		w.have[key] = struct{}{}
		if w.firstAt.IsZero() {
			w.firstAt = now
		}
		if w.target > 0 && len(w.have)*10%w.target == 0 && len(w.have) <= w.target {
			if i := len(w.have)*10/w.target - 1; i >= 0 && w.marks[i].IsZero() {
				w.marks[i] = now
			}
		}
		if w.reached != nil && len(w.have) >= w.target {
			w.reached <- now
			w.reached = nil
		}
	case !add && had:
		delete(w.have, key)
	}
	if p := netip.PrefixFrom(netip.AddrFrom4(dst), int(dstLen)); w.watch.Contains(p.Addr()) {
		if add {
			w.adds[p] = now
		} else {
			w.dels[p] = now
		}
	}
}

// arm returns a channel that receives the time the count reaches target.
func (w *routeWatch) arm(target int) <-chan time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan time.Time, 1)
	w.target, w.reached, w.firstAt, w.marks, w.msgs = target, ch, time.Time{}, [10]time.Time{}, [2]int{}
	if len(w.have) >= target {
		ch <- time.Now()
		w.reached = nil
	}
	return ch
}

// clear forgets every counted route and a past overflow: for when the
// kernel is known to hold none of the protocol's routes (after a flush)
// but lost notifications left the count unreliable.
func (w *routeWatch) clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.have, w.overflow = map[uint64]struct{}{}, false
}

func (w *routeWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.have)
}

func (w *routeWatch) first() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.firstAt
}

// messages returns how many RTM_NEWROUTE and RTM_DELROUTE of the protocol
// were seen since arm.
func (w *routeWatch) messages() [2]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.msgs
}

// progress returns when the count reached 10%, 20%, ... 100% of the
// armed target.
func (w *routeWatch) progress() [10]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks
}

func (w *routeWatch) overflowed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.overflow
}

func (w *routeWatch) added(p netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.adds[p]
}

func (w *routeWatch) deleted(p netip.Prefix) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dels[p]
}

// watchedAdded returns every route inside the watched range that was
// added at some point since the watch started (present or not now).
func (w *routeWatch) watchedAdded() []netip.Prefix {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]netip.Prefix, 0, len(w.adds))
	for p := range w.adds {
		out = append(out, p)
	}
	return out
}

func (w *routeWatch) close() error { return w.sock.close() }
