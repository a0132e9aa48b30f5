package bgppeer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Config says who the peer is and what its OPEN offers.
type Config struct {
	ASN      uint32
	RouterID netip.Addr
	// HoldTime offered in the OPEN (0: DefaultHoldTime). The session uses
	// the smaller of both sides' and sends KEEPALIVEs every third of it.
	HoldTime time.Duration
	// Families offered (nil: IPv4 and IPv6 unicast).
	Families        []Family
	GracefulRestart *GracefulRestart
	ExtendedMessage bool

	// LocalAddr is the address to dial from (Dial only; invalid: any).
	LocalAddr netip.Addr
	// Password is the TCP MD5 key (RFC 2385) for the connection (Dial)
	// or for the peers' addresses (Listen); empty: none.
	Password string
}

// DefaultHoldTime is the hold time offered when Config.HoldTime is 0.
const DefaultHoldTime = 9 * time.Second

func (c Config) open() Open {
	fams := c.Families
	if fams == nil {
		fams = []Family{IPv4Unicast, IPv6Unicast}
	}
	hold := c.HoldTime
	if hold == 0 {
		hold = DefaultHoldTime
	}
	return Open{ASN: c.ASN, HoldTime: uint16(hold / time.Second), RouterID: c.RouterID, Families: fams,
		RouteRefresh: true, ExtendedMessage: c.ExtendedMessage, GracefulRestart: c.GracefulRestart}
}

// Received is one message the peer received, as it came (Raw) and as
// GoBGP's parser understood it (Msg, nil if it could not: ParseErr says
// why).
type Received struct {
	At       time.Time
	Type     uint8
	Raw      []byte
	Msg      *bgp.BGPMessage
	ParseErr error
}

// Peer is one TCP connection to the speaker under test and what happened
// on it. Its methods are safe for concurrent use.
type Peer struct {
	cfg  Config
	conn net.Conn

	wmu sync.Mutex // one writer at a time; whole messages stay whole

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	received    []Received
	counts      map[uint8]int
	notes       []Notification
	noteAt      time.Time // first NOTIFICATION
	remoteOpen  *bgp.BGPOpen
	openAt      time.Time
	keepaliveAt time.Time // first KEEPALIVE
	established time.Time
	hold        time.Duration
	closed      bool
	closedAt    time.Time
	closeErr    error
	sent        map[uint8]int
	// keepRecvUpdates bounds memory in floods: received UPDATEs are
	// counted but their bytes kept only for the first few.
	keepRecvUpdates int

	stopKA chan struct{}
	kaOnce sync.Once
	done   chan struct{}
}

// keptUpdates is how many received UPDATEs keep their bytes.
const keptUpdates = 10000

// New starts a peer on an open connection: it starts reading at once.
// Nothing is sent until the caller sends (Handshake sends the OPEN).
func New(conn net.Conn, cfg Config) *Peer {
	p := &Peer{cfg: cfg, conn: conn, changed: make(chan struct{}), counts: map[uint8]int{},
		sent: map[uint8]int{}, stopKA: make(chan struct{}), done: make(chan struct{}), keepRecvUpdates: keptUpdates}
	go p.read()
	return p
}

// Dial connects to remote (from cfg.LocalAddr, with cfg.Password) and
// returns a reading peer. Call it inside a network namespace to dial from
// there: the socket is created on the calling goroutine's thread.
func Dial(ctx context.Context, remote netip.AddrPort, cfg Config) (*Peer, error) {
	d := net.Dialer{Control: func(network, address string, c rawConn) error {
		if cfg.Password == "" {
			return nil
		}
		return setMD5(c, remote.Addr(), cfg.Password)
	}}
	if cfg.LocalAddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalAddr.AsSlice(), Zone: cfg.LocalAddr.Zone()}
	}
	d.SetMultipathTCP(false) // the kernel refuses TCP_MD5SIG on MPTCP sockets
	conn, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return nil, err
	}
	return New(conn, cfg), nil
}

// Conn is the underlying connection.
func (p *Peer) Conn() net.Conn { return p.conn }

// LocalAddr and RemoteAddr are the connection's addresses.
func (p *Peer) LocalAddr() netip.AddrPort  { return addrPort(p.conn.LocalAddr()) }
func (p *Peer) RemoteAddr() netip.AddrPort { return addrPort(p.conn.RemoteAddr()) }

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (p *Peer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// read records every message until the connection ends.
func (p *Peer) read() {
	var err error
	defer func() {
		p.mu.Lock()
		p.closed = true
		p.closedAt = time.Now()
		if err == io.EOF {
			err = nil // an orderly close, between messages
		}
		p.closeErr = err
		p.notifyLocked()
		p.mu.Unlock()
		p.StopKeepalives()
		close(p.done)
		p.conn.Close()
	}()
	hdr := make([]byte, HeaderLen)
	for {
		if _, err = io.ReadFull(p.conn, hdr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("connection closed inside a message header: %w", err)
			}
			return
		}
		length := int(binary.BigEndian.Uint16(hdr[16:18]))
		if length < HeaderLen {
			err = fmt.Errorf("received a header with length %d: cannot frame the stream", length)
			return
		}
		msg := make([]byte, length)
		copy(msg, hdr)
		if _, err = io.ReadFull(p.conn, msg[HeaderLen:]); err != nil {
			err = fmt.Errorf("connection closed inside a %d-byte message of type %d: %w", length, hdr[18], err)
			return
		}
		p.record(msg, time.Now())
	}
}

// record stores one received message.
func (p *Peer) record(msg []byte, at time.Time) {
	r := Received{At: at, Type: msg[18], Raw: msg}
	r.Msg, r.ParseErr = bgp.ParseBGPMessage(msg, &bgp.MarshallingOption{ExtendedMessage: true})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[r.Type]++
	switch r.Type {
	case TypeOpen:
		if o, ok := bodyOf[*bgp.BGPOpen](r.Msg); ok && p.remoteOpen == nil {
			p.remoteOpen = o
			p.openAt = at
		}
	case TypeKeepalive:
		if p.keepaliveAt.IsZero() {
			p.keepaliveAt = at
		}
	case TypeNotification:
		n := Notification{}
		if len(msg) >= HeaderLen+2 {
			n = Notification{Code: msg[19], Subcode: msg[20], Data: msg[21:]}
		}
		if len(p.notes) == 0 {
			p.noteAt = at
		}
		p.notes = append(p.notes, n)
	case TypeUpdate:
		if p.keepRecvUpdates <= 0 {
			r.Raw, r.Msg = nil, nil
		} else {
			p.keepRecvUpdates--
		}
	}
	p.received = append(p.received, r)
	p.notifyLocked()
}

func bodyOf[T bgp.BGPBody](m *bgp.BGPMessage) (T, bool) {
	var zero T
	if m == nil {
		return zero, false
	}
	b, ok := m.Body.(T)
	return b, ok
}

// waitFor waits until cond (called with p.mu held) is true, the
// connection has closed or ctx ends; only the first is not an error.
func (p *Peer) waitFor(ctx context.Context, what string, cond func() bool) error {
	for {
		p.mu.Lock()
		ok, closed, ch := cond(), p.closed, p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return fmt.Errorf("waiting for %s: %w", what, p.closedError())
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// ErrClosed is wrapped by errors of waits that the connection's end cut
// short.
var ErrClosed = errors.New("connection closed")

func (p *Peer) closedError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := "without NOTIFICATION"
	if len(p.notes) > 0 {
		msg = "after NOTIFICATION " + p.notes[0].String()
	}
	if p.closeErr != nil {
		return fmt.Errorf("%w %s: %v", ErrClosed, msg, p.closeErr)
	}
	return fmt.Errorf("%w %s", ErrClosed, msg)
}

// WaitOpen waits for the other side's OPEN (a speaker sends it as soon as
// it accepts a connection) and returns it.
func (p *Peer) WaitOpen(ctx context.Context) (*bgp.BGPOpen, error) {
	err := p.waitFor(ctx, "the OPEN", func() bool { return p.remoteOpen != nil })
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.remoteOpen, err
}

// Handshake sends the OPEN, waits for the other side's OPEN, answers it
// with a KEEPALIVE, waits for its KEEPALIVE and then keeps the session
// alive with KEEPALIVEs every third of the negotiated hold time until
// StopKeepalives or the end of the connection.
func (p *Peer) Handshake(ctx context.Context) error {
	open, err := p.cfg.open().Encode()
	if err != nil {
		return err
	}
	if err := p.Send(open); err != nil {
		return err
	}
	remote, err := p.WaitOpen(ctx)
	if err != nil {
		return err
	}
	if err := p.Send(Keepalive()); err != nil {
		return err
	}
	// Only KEEPALIVEs after the OPEN count (one cannot come before it
	// from a correct speaker, but this is a test tool).
	if err := p.waitFor(ctx, "the KEEPALIVE", func() bool {
		return !p.keepaliveAt.IsZero() && !p.keepaliveAt.Before(p.openAt)
	}); err != nil {
		return err
	}
	hold := min(time.Duration(remote.HoldTime)*time.Second, time.Duration(p.cfg.open().HoldTime)*time.Second)
	p.mu.Lock()
	p.established = time.Now()
	p.hold = hold
	p.mu.Unlock()
	if hold > 0 {
		go p.keepalives(hold / 3)
	}
	return nil
}

func (p *Peer) keepalives(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopKA:
			return
		case <-t.C:
			if err := p.Send(Keepalive()); err != nil {
				return
			}
		}
	}
}

// StopKeepalives stops sending KEEPALIVEs (to let the other side's hold
// timer run out, or before sending a partial message).
func (p *Peer) StopKeepalives() {
	p.kaOnce.Do(func() { close(p.stopKA) })
}

// Send writes msgs, whole and in order, in one write. A failed write is
// returned (the connection is usually closed by then).
func (p *Peer) Send(msgs ...[]byte) error {
	var buf []byte
	if len(msgs) == 1 {
		buf = msgs[0]
	} else {
		for _, m := range msgs {
			buf = append(buf, m...)
		}
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write(buf); err != nil {
		return err
	}
	p.mu.Lock()
	for _, m := range msgs {
		if len(m) >= HeaderLen {
			p.sent[m[18]]++
		}
	}
	p.mu.Unlock()
	return nil
}

// SendUpdate encodes u (with this peer's AS as the AS path when u has
// none) and sends it.
func (p *Peer) SendUpdate(u Update) error {
	if u.ASPath == nil {
		u.ASPath = []uint32{p.cfg.ASN}
	}
	msg, err := u.Encode()
	if err != nil {
		return err
	}
	return p.Send(msg)
}

// SendMany sends msgs in writes of about batchBytes (64 KiB if 0), for
// floods; it stops at the first failed write and returns how many
// messages were written whole.
func (p *Peer) SendMany(msgs [][]byte, batchBytes int) (int, error) {
	if batchBytes <= 0 {
		batchBytes = 64 << 10
	}
	sent := 0
	for sent < len(msgs) {
		n, size := 0, 0
		for sent+n < len(msgs) && (n == 0 || size+len(msgs[sent+n]) <= batchBytes) {
			size += len(msgs[sent+n])
			n++
		}
		if err := p.Send(msgs[sent : sent+n]...); err != nil {
			return sent, err
		}
		sent += n
	}
	return sent, nil
}

// SendNotification sends a NOTIFICATION and closes the connection, as
// RFC 4271 has it.
func (p *Peer) SendNotification(n Notification) error {
	return errors.Join(p.Send(n.Encode()), p.Close())
}

// Close closes the connection (without a NOTIFICATION) and waits for the
// reader to finish.
func (p *Peer) Close() error {
	p.StopKeepalives()
	err := p.conn.Close()
	<-p.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// CloseWrite half-closes the connection (TCP FIN) and keeps reading.
func (p *Peer) CloseWrite() error {
	p.StopKeepalives()
	if cw, ok := p.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("connection cannot half-close")
}

// Done is closed when the connection has ended (either side closed it).
func (p *Peer) Done() <-chan struct{} { return p.done }

// WaitClosed waits up to timeout for the connection to end and says
// whether it did.
func (p *Peer) WaitClosed(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// WaitNotification waits for a NOTIFICATION or the end of the
// connection, up to timeout; it returns the first NOTIFICATION received,
// if any.
func (p *Peer) WaitNotification(timeout time.Duration) (Notification, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p.waitFor(ctx, "a NOTIFICATION", func() bool { return len(p.notes) > 0 })
	return p.FirstNotification()
}

// State is a summary of what happened on the connection.
type State struct {
	// Established is when the handshake completed (zero if it did not).
	Established time.Time
	// HoldTime is the negotiated hold time.
	HoldTime time.Duration
	// Notifications received, in order; NotificationAt is the first's time.
	Notifications  []Notification
	NotificationAt time.Time
	// Closed says the connection has ended, at ClosedAt; CloseErr is a read
	// error other than an orderly close, if any.
	Closed   bool
	ClosedAt time.Time
	CloseErr error
	// Received and Sent count messages by type.
	Received, Sent map[uint8]int
	// RemoteOpen is the other side's OPEN, if one came, at OpenAt.
	RemoteOpen *bgp.BGPOpen
	OpenAt     time.Time
}

// State returns what happened so far.
func (p *Peer) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := State{Established: p.established, HoldTime: p.hold, Notifications: append([]Notification(nil), p.notes...),
		NotificationAt: p.noteAt, Closed: p.closed, ClosedAt: p.closedAt, CloseErr: p.closeErr,
		Received: map[uint8]int{}, Sent: map[uint8]int{}, RemoteOpen: p.remoteOpen, OpenAt: p.openAt}
	for k, v := range p.counts {
		s.Received[k] = v
	}
	for k, v := range p.sent {
		s.Sent[k] = v
	}
	return s
}

// FirstNotification is the first NOTIFICATION received, if any.
func (p *Peer) FirstNotification() (Notification, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.notes) == 0 {
		return Notification{}, false
	}
	return p.notes[0], true
}

// Messages returns the messages received so far (UPDATEs past the first
// 10,000 without their bytes).
func (p *Peer) Messages() []Received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Received(nil), p.received...)
}

// Outcome describes how the connection ended, for a report: the
// NOTIFICATION received, or that it closed without one, or that it is
// still open.
func (p *Peer) Outcome() string {
	s := p.State()
	switch {
	case len(s.Notifications) > 0:
		return "NOTIFICATION " + s.Notifications[0].String()
	case s.Closed:
		return "connection closed without NOTIFICATION"
	}
	return "no NOTIFICATION, connection open"
}
