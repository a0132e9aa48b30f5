package routes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Reading the kernel's routes of our protocol, lean: a dump is parsed as
// it streams in (no list of 100k routes is built), and the subscription
// for deletions has a socket filter, so the kernel wakes us only for a
// route of ours being deleted, never for the routes we write ourselves.

// kernelRoute is one route of ours as the kernel reports it.
type kernelRoute struct {
	prefix    netip.Prefix
	blackhole bool
	hops      []netip.Addr // normalized; reused between calls
}

// errDumpInterrupted: the table changed during the dump (NLM_F_DUMP_INTR);
// the dump must be started again.
var errDumpInterrupted = errors.New("route dump interrupted by a concurrent change")

const (
	rtmsgProtocolOff = nlmsgHdrLen + 5
	rtmsgTableOff    = nlmsgHdrLen + 4
	// netlinkGetStrictChk is NETLINK_GET_STRICT_CHK: the kernel filters a
	// route dump by the table and protocol of the request (Linux 4.20+).
	netlinkGetStrictChk = 12
)

// dumpSocket opens a socket for route dumps in ns.
func dumpSocket(ns netns.NsHandle) (int, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return -1, fmt.Errorf("open netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, netlinkGetStrictChk, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufBytes)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind netlink socket: %w", err)
	}
	return fd, nil
}

// dumpOwn streams every route of protocol proto in table to fn, retrying
// a dump that a concurrent change interrupted. fn may be called again
// for a route after a retry; it must not keep kr.hops.
func dumpOwn(fd int, table uint32, proto uint8, fn func(kr *kernelRoute)) error {
	var err error
	for attempt := 0; attempt < dumpRetries; attempt++ {
		if err = dumpOnce(fd, table, proto, fn); !errors.Is(err, errDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("list routes of protocol %d in table %d: %w", proto, table, err)
	}
	return nil
}

func dumpOnce(fd int, table uint32, proto uint8, fn func(kr *kernelRoute)) error {
	const seq = 1
	req := binary.NativeEndian.AppendUint32(nil, 0)
	req = binary.NativeEndian.AppendUint16(req, unix.RTM_GETROUTE)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req = binary.NativeEndian.AppendUint32(req, seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	rtTable := byte(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		rtTable = byte(table)
	}
	req = append(req, unix.AF_UNSPEC, 0, 0, 0, rtTable, proto, 0, 0)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = appendAttr(req, unix.RTA_TABLE, binary.NativeEndian.AppendUint32(nil, table))
	binary.NativeEndian.PutUint32(req, uint32(len(req)))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 1<<16)
	var kr kernelRoute
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			if l < nlmsgHdrLen || l > len(b) {
				return fmt.Errorf("netlink: bad message length %d", l)
			}
			msg := b[:l]
			b = b[(l+3)&^3:]
			if binary.NativeEndian.Uint32(msg[8:12]) != seq {
				continue
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				if interrupted {
					return errDumpInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(msg) >= nlmsgHdrLen+4 {
					if code := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:])); code != 0 {
						return fmt.Errorf("netlink dump: %w", unix.Errno(-code))
					}
				}
				return nil
			case unix.RTM_NEWROUTE:
				if parseRoute(msg, table, proto, &kr) {
					fn(&kr)
				}
			}
		}
	}
}

// parseRoute decodes an RTM_NEWROUTE/RTM_DELROUTE message (header
// included) into kr when it is a route of proto in table.
func parseRoute(msg []byte, table uint32, proto uint8, kr *kernelRoute) bool {
	if len(msg) < nlmsgHdrLen+rtmsgLen {
		return false
	}
	rtm := msg[nlmsgHdrLen:]
	family, dstLen, rtTable, rtProto, rtType := rtm[0], int(rtm[1]), uint32(rtm[4]), rtm[5], rtm[7]
	if rtProto != proto || (family != unix.AF_INET && family != unix.AF_INET6) {
		return false
	}
	kr.hops = kr.hops[:0]
	kr.blackhole = rtType == unix.RTN_BLACKHOLE
	var dst netip.Addr
	for a := rtm[rtmsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a[0:2]))
		t := binary.NativeEndian.Uint16(a[2:4])
		if l < 4 || l > len(a) {
			break
		}
		data := a[4:l]
		a = a[(l+3)&^3:]
		switch t {
		case unix.RTA_DST:
			dst, _ = netip.AddrFromSlice(data)
		case unix.RTA_TABLE:
			if len(data) >= 4 {
				rtTable = binary.NativeEndian.Uint32(data)
			}
		case unix.RTA_GATEWAY:
			if gw, ok := netip.AddrFromSlice(data); ok {
				kr.hops = append(kr.hops, gw.Unmap())
			}
		case unix.RTA_MULTIPATH:
			for m := data; len(m) >= 8; {
				nl := int(binary.NativeEndian.Uint16(m[0:2]))
				if nl < 8 || nl > len(m) {
					break
				}
				for na := m[8:nl]; len(na) >= 4; {
					al := int(binary.NativeEndian.Uint16(na[0:2]))
					if al < 4 || al > len(na) {
						break
					}
					if binary.NativeEndian.Uint16(na[2:4]) == unix.RTA_GATEWAY {
						if gw, ok := netip.AddrFromSlice(na[4:al]); ok {
							kr.hops = append(kr.hops, gw.Unmap())
						}
					}
					na = na[(al+3)&^3:]
				}
				m = m[(nl+3)&^3:]
			}
		}
	}
	if rtTable != table {
		return false
	}
	if !dst.IsValid() {
		dst = netip.IPv4Unspecified()
		if family == unix.AF_INET6 {
			dst = netip.IPv6Unspecified()
		}
	}
	p, err := dst.Unmap().Prefix(dstLen)
	if err != nil {
		return false
	}
	kr.prefix = p
	if kr.blackhole {
		kr.hops = kr.hops[:0]
	} else {
		slices.SortFunc(kr.hops, func(a, b netip.Addr) int { return a.Compare(b) })
		kr.hops = slices.Compact(kr.hops)
	}
	return true
}

// deleteWatch is a subscription to the deletion of routes of our
// protocol (and, when it fits the rtmsg's 8-bit field, table). Everything
// else the kernel announces, above all the RTM_NEWROUTE of each route we
// write, is dropped by a socket filter in the kernel.
type deleteWatch struct {
	f     *os.File
	rc    syscall.RawConn
	table uint32
	proto uint8
}

// deleteFilter is the socket filter: pass RTM_DELROUTE of proto (and of
// table when table < 256), drop the rest.
func deleteFilter(table uint32, proto uint8) ([]bpf.RawInstruction, error) {
	// nlmsg_type is in host byte order; BPF loads are big-endian.
	var t [2]byte
	binary.NativeEndian.PutUint16(t[:], unix.RTM_DELROUTE)
	delType := uint32(binary.BigEndian.Uint16(t[:]))
	// A table >= 256 shows as RT_TABLE_COMPAT in the rtmsg; parseRoute
	// checks RTA_TABLE then.
	rtTable := table
	if table >= 256 {
		rtTable = unix.RT_TABLE_COMPAT
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: delType, SkipTrue: 5},
		bpf.LoadAbsolute{Off: rtmsgProtocolOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(proto), SkipTrue: 3},
		bpf.LoadAbsolute{Off: rtmsgTableOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: rtTable, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffffffff},
		bpf.RetConstant{Val: 0},
	}
	return bpf.Assemble(prog)
}

func openDeleteWatch(ns netns.NsHandle, table uint32, proto uint8, rcvBuf int) (*deleteWatch, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	raw, err := deleteFilter(table, proto)
	if err == nil {
		filter := make([]unix.SockFilter, len(raw))
		for i, ins := range raw {
			filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach the route-deletion socket filter: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	groups := uint32(unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &deleteWatch{f: os.NewFile(uintptr(fd), "route-deletions"), table: table, proto: proto}
	if w.rc, err = w.f.SyscallConn(); err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// run reports each deleted prefix to deleted until the socket is closed
// or fails; a receive buffer overflow (ENOBUFS: deletions were lost) is
// reported to overflow and reading goes on.
// Every message read is counted in received, before any check of ours:
// what the socket filter lets through.
func (w *deleteWatch) run(received *atomic.Uint64, deleted func(netip.Prefix), overflow func()) error {
	buf := make([]byte, 1<<16)
	var kr kernelRoute
	for {
		var failed error
		err := w.rc.Read(func(fd uintptr) bool {
			for {
				n, _, err := unix.Recvfrom(int(fd), buf, 0)
				switch {
				case err == unix.EAGAIN:
					return false
				case err == unix.EINTR:
					continue
				case err == unix.ENOBUFS:
					overflow()
					continue
				case err != nil:
					failed = err
					return true
				}
				for b := buf[:n]; len(b) >= nlmsgHdrLen; {
					l := int(binary.NativeEndian.Uint32(b[0:4]))
					if l < nlmsgHdrLen || l > len(b) {
						break
					}
					msg := b[:l]
					b = b[(l+3)&^3:]
					received.Add(1)
					if binary.NativeEndian.Uint16(msg[4:6]) == unix.RTM_DELROUTE && parseRoute(msg, w.table, w.proto, &kr) {
						deleted(kr.prefix)
					}
				}
			}
		})
		if err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
	}
}

func (w *deleteWatch) close() { w.f.Close() }
