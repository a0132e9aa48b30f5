package routes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// batchSocket writes route changes to the kernel in pipelined batches.
//
// Why not one netlink call per route: a request with its own round trip
// per route (what a naive loop over netlink.RouteReplace does) caps out far
// below what the kernel can absorb. Here many requests are packed into one
// sendmsg; rtnetlink processes every message in the buffer during that
// call, and reports only failures, except for the last message of each
// chunk which asks for an acknowledgement, so its answer marks the end of
// the chunk's replies.
type batchSocket struct {
	fd      int
	seq     uint32
	recvBuf []byte
	sendBuf []byte
}

const (
	// chunkBytes bounds one sendmsg. The kernel refuses a message larger
	// than the socket's send buffer, which we raise to sndBufBytes.
	chunkBytes  = 128 << 10
	sndBufBytes = 1 << 20
	// rcvBufBytes holds the replies of one chunk in the worst case (every
	// request failing with an extended-ack message).
	rcvBufBytes = 4 << 20

	nlmsgHdrLen = 16
	rtmsgLen    = 12
)

// openBatchSocket opens a NETLINK_ROUTE socket in namespace ns (the
// current one when ns is not open).
func openBatchSocket(ns netns.NsHandle) (*batchSocket, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// Forcing needs CAP_NET_ADMIN, which the reconciler needs anyway; fall
	// back to the unprivileged option so tests show the real error later.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndBufBytes)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufBytes)
	}
	// Replies carry only the failed request's header, not the whole
	// request, and a text reason from the kernel when it has one.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	return &batchSocket{fd: fd, recvBuf: make([]byte, 1<<16)}, nil
}

// socketIn creates the socket on a thread switched into ns, so the socket
// belongs to ns for its whole life whatever thread uses it later.
func socketIn(ns netns.NsHandle) (int, error) {
	if !ns.IsOpen() {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return -1, err
	}
	fd, sockErr := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace; keep it locked so
		// the runtime throws it away instead of reusing it.
		runtime.LockOSThread()
		if sockErr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("return to original namespace: %w", err)
	}
	return fd, sockErr
}

func (s *batchSocket) close() { unix.Close(s.fd) }

// op is one request of a batch.
type op struct {
	route   Route
	delete  bool
	replace bool
	// hops is route's interned next-hop set (table.go), so that recording
	// a write needs no second look-up.
	hops hopsID
}

// apply sends ops and returns one error per op (nil on success). A delete
// of a route that is already gone counts as success. The returned error is
// for the socket itself failing; then only the first known results are
// certain, the rest unknown.
func (s *batchSocket) apply(ops []op, table uint32, proto uint8) (results []error, known int, err error) {
	results = make([]error, len(ops))
	for start := 0; start < len(ops); {
		s.sendBuf = s.sendBuf[:0]
		firstSeq := s.seq + 1
		end, lastAt := start, 0
		for end < len(ops) && len(s.sendBuf) < chunkBytes {
			s.seq++
			lastAt = len(s.sendBuf)
			s.sendBuf = appendRouteRequest(s.sendBuf, ops[end], table, proto, s.seq)
			end++
		}
		// Only the chunk's last request asks for an acknowledgement.
		flags := binary.NativeEndian.Uint16(s.sendBuf[lastAt+6:])
		binary.NativeEndian.PutUint16(s.sendBuf[lastAt+6:], flags|unix.NLM_F_ACK)
		if err := unix.Sendto(s.fd, s.sendBuf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return results, start, fmt.Errorf("netlink send: %w", err)
		}
		if err := s.collect(firstSeq, s.seq, results[start:end]); err != nil {
			return results, start, err
		}
		for i := start; i < end; i++ {
			if ops[i].delete && errors.Is(results[i], unix.ESRCH) {
				results[i] = nil
			}
		}
		start = end
	}
	return results, len(ops), nil
}

// collect reads replies until the acknowledgement of lastSeq arrives,
// storing each failure at its request's position.
func (s *batchSocket) collect(firstSeq, lastSeq uint32, results []error) error {
	for {
		n, _, err := unix.Recvfrom(s.fd, s.recvBuf, 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(s.recvBuf[:n])
		if err != nil {
			return fmt.Errorf("netlink parse reply: %w", err)
		}
		done := false
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < firstSeq || m.Header.Seq > lastSeq {
				continue
			}
			if errno, reason := parseNlmsgerr(m); errno != 0 {
				results[m.Header.Seq-firstSeq] = kernelError{errno: errno, reason: reason}
			}
			if m.Header.Seq == lastSeq {
				done = true
			}
		}
		if done {
			return nil
		}
	}
}

// kernelError is a rejected request: the errno, and the kernel's own
// explanation when extended acks gave one.
type kernelError struct {
	errno  unix.Errno
	reason string
}

func (e kernelError) Error() string {
	if e.reason != "" {
		return e.errno.Error() + ": " + e.reason
	}
	return e.errno.Error()
}

func (e kernelError) Unwrap() error { return e.errno }

// parseNlmsgerr decodes struct nlmsgerr and, with NETLINK_EXT_ACK, the
// NLMSGERR_ATTR_MSG text that follows the echoed header.
func parseNlmsgerr(m syscall.NetlinkMessage) (unix.Errno, string) {
	if len(m.Data) < 4 {
		return unix.EBADMSG, "short netlink error message"
	}
	code := int32(binary.NativeEndian.Uint32(m.Data[:4]))
	if code == 0 {
		return 0, ""
	}
	errno := unix.Errno(-code)
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) < 4+nlmsgHdrLen {
		return errno, ""
	}
	// With NETLINK_CAP_ACK only the request's header is echoed.
	tlvs := m.Data[4+nlmsgHdrLen:]
	for len(tlvs) >= 4 {
		l := int(binary.NativeEndian.Uint16(tlvs[0:2]))
		t := binary.NativeEndian.Uint16(tlvs[2:4])
		if l < 4 || l > len(tlvs) {
			break
		}
		if t == unix.NLMSGERR_ATTR_MSG {
			msg := tlvs[4:l]
			for len(msg) > 0 && msg[len(msg)-1] == 0 {
				msg = msg[:len(msg)-1]
			}
			return errno, string(msg)
		}
		tlvs = tlvs[(l+3)&^3:]
	}
	return errno, ""
}

// appendRouteRequest encodes one RTM_NEWROUTE or RTM_DELROUTE.
func appendRouteRequest(b []byte, o op, table uint32, proto uint8, seq uint32) []byte {
	start := len(b)
	msgType := uint16(unix.RTM_NEWROUTE)
	flags := uint16(unix.NLM_F_REQUEST)
	switch {
	case o.delete:
		msgType = unix.RTM_DELROUTE
	case o.replace:
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	default:
		// Exclusive create: if any route (ours or not) holds this key the
		// kernel says EEXIST instead of silently replacing it.
		flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, patched below
	b = binary.NativeEndian.AppendUint16(b, msgType)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)

	r := o.route
	family := byte(unix.AF_INET)
	if r.Prefix.Addr().Is6() {
		family = unix.AF_INET6
	}
	rtTable := byte(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		rtTable = byte(table)
	}
	scope := byte(unix.RT_SCOPE_UNIVERSE)
	rtType := byte(unix.RTN_UNICAST)
	if r.Blackhole {
		rtType = unix.RTN_BLACKHOLE
	}
	if o.delete {
		// Match the route whatever its scope and type (as `ip route del`
		// does); the protocol in the request makes the kernel delete only
		// a route of ours.
		scope = unix.RT_SCOPE_NOWHERE
		rtType = unix.RTN_UNSPEC
	}
	b = append(b, family, byte(r.Prefix.Bits()), 0, 0, rtTable, proto, scope, rtType)
	b = binary.NativeEndian.AppendUint32(b, 0) // rtm_flags

	b = appendAttr(b, unix.RTA_DST, r.Prefix.Addr().AsSlice())
	b = appendAttr(b, unix.RTA_TABLE, binary.NativeEndian.AppendUint32(nil, table))
	if !o.delete && !r.Blackhole {
		if len(r.NextHops) == 1 {
			b = appendAttr(b, unix.RTA_GATEWAY, r.NextHops[0].AsSlice())
		} else {
			b = appendMultipath(b, r.NextHops)
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for l%4 != 0 {
		b = append(b, 0)
		l++
	}
	return b
}

// appendMultipath encodes RTA_MULTIPATH: a list of struct rtnexthop, each
// followed by its own RTA_GATEWAY. ifindex 0 lets the kernel resolve the
// device from the gateway, as it does for a single next hop.
func appendMultipath(b []byte, hops []netip.Addr) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0) // patched
	b = binary.NativeEndian.AppendUint16(b, unix.RTA_MULTIPATH)
	for _, nh := range hops {
		gw := nh.AsSlice()
		rtnhLen := 8 + 4 + len(gw)
		b = binary.NativeEndian.AppendUint16(b, uint16(rtnhLen))
		b = append(b, 0, 0) // flags, hops (weight 1)
		b = binary.NativeEndian.AppendUint32(b, 0)
		b = appendAttr(b, unix.RTA_GATEWAY, gw)
	}
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}
