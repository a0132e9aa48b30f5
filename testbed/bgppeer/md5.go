package bgppeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type rawConn = syscall.RawConn

// setMD5 sets the TCP MD5 key (RFC 2385) for segments to and from addr on
// the socket behind c (Linux TCP_MD5SIG).
func setMD5(c rawConn, addr netip.Addr, key string) error {
	if len(key) > unix.TCP_MD5SIG_MAXKEYLEN {
		return fmt.Errorf("TCP MD5 key of %d bytes: at most %d", len(key), unix.TCP_MD5SIG_MAXKEYLEN)
	}
	sig := unix.TCPMD5Sig{Keylen: uint16(len(key))}
	copy(sig.Key[:], key)
	addr = addr.Unmap()
	if addr.Is4() {
		sig.Addr.Family = unix.AF_INET
		a := addr.As4()
		copy(sig.Addr.Data[2:6], a[:]) // sockaddr_in: port, then address
	} else {
		sig.Addr.Family = unix.AF_INET6
		a := addr.As16()
		copy(sig.Addr.Data[6:22], a[:]) // sockaddr_in6: port, flow info, address
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	})
	if err := errors.Join(err, serr); err != nil {
		return fmt.Errorf("set TCP MD5 key for %s: %w", addr, err)
	}
	return nil
}

// Listener accepts connections from the speaker under test, for sessions
// that it initiates.
type Listener struct {
	cfg Config
	ln  *net.TCPListener
}

// Listen listens on addr (a plain TCP socket, not Multipath TCP, so that
// MD5 works) with cfg.Password as the MD5 key for each address in
// md5Peers. Call it inside a network namespace to listen there.
func Listen(addr netip.AddrPort, cfg Config, md5Peers ...netip.Addr) (*Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c rawConn) error {
		if cfg.Password == "" {
			return nil
		}
		for _, a := range md5Peers {
			if err := setMD5(c, a, cfg.Password); err != nil {
				return err
			}
		}
		return nil
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return &Listener{cfg: cfg, ln: ln.(*net.TCPListener)}, nil
}

// Addr is the listening address.
func (l *Listener) Addr() netip.AddrPort { return l.ln.Addr().(*net.TCPAddr).AddrPort() }

// Accept waits for the next connection, until ctx ends, and returns a
// reading peer on it.
func (l *Listener) Accept(ctx context.Context) (*Peer, error) {
	// Wake the Accept when ctx ends; the listener stays usable.
	stop := context.AfterFunc(ctx, func() { l.ln.SetDeadline(time.Now()) })
	defer stop()
	l.ln.SetDeadline(time.Time{})
	conn, err := l.ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return New(conn, l.cfg), nil
}

// Close stops listening.
func (l *Listener) Close() error { return l.ln.Close() }
