package bgppeer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

func cfg(asn uint32, id string, hold time.Duration) Config {
	return Config{ASN: asn, RouterID: netip.MustParseAddr(id), HoldTime: hold}
}

// handshakeBoth runs the handshake on both ends at once.
func handshakeBoth(t *testing.T, a, b *Peer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.Handshake(ctx) }()
	go func() { errs <- b.Handshake(ctx) }()
	if err := errors.Join(<-errs, <-errs); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeUpdateAndNotification(t *testing.T) {
	c1, c2 := net.Pipe()
	a := New(c1, cfg(65099, "192.0.2.1", 9*time.Second))
	b := New(c2, cfg(4200000001, "192.0.2.2", 3*time.Second))
	defer a.Close()
	defer b.Close()
	handshakeBoth(t, a, b)

	sa := a.State()
	if sa.Established.IsZero() || sa.HoldTime != 3*time.Second || sa.RemoteOpen == nil {
		t.Fatalf("a after the handshake: %+v", sa)
	}
	var as4 uint32
	for _, p := range sa.RemoteOpen.OptParams {
		for _, c := range p.(*bgp.OptionParameterCapability).Capability {
			if c, ok := c.(*bgp.CapFourOctetASNumber); ok {
				as4 = c.CapValue
			}
		}
	}
	if as4 != 4200000001 {
		t.Errorf("a saw 4-octet AS %d", as4)
	}

	// KEEPALIVEs flow every hold/3 (1 s here).
	time.Sleep(1500 * time.Millisecond)
	if got := a.State().Received[TypeKeepalive]; got < 2 {
		t.Errorf("a received %d KEEPALIVEs in 1.5 s with a 3 s hold time", got)
	}

	if err := b.SendUpdate(Update{NLRI: prefixes("10.244.7.0/24"), NextHop: netip.MustParseAddr("192.0.2.2")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.waitFor(ctx, "an UPDATE", func() bool { return a.counts[TypeUpdate] > 0 }); err != nil {
		t.Fatal(err)
	}
	var got *bgp.BGPUpdate
	for _, m := range a.Messages() {
		if m.Type == TypeUpdate {
			got = m.Msg.Body.(*bgp.BGPUpdate)
		}
	}
	if len(got.NLRI) != 1 || got.NLRI[0].NLRI.String() != "10.244.7.0/24" {
		t.Errorf("a received %+v", got)
	}

	if err := b.SendNotification(Notification{Code: 6, Subcode: 2}); err != nil {
		t.Fatal(err)
	}
	n, ok := a.WaitNotification(5 * time.Second)
	if !ok || n.Code != 6 || n.Subcode != 2 {
		t.Fatalf("a: notification %v %v", n, ok)
	}
	if !a.WaitClosed(5 * time.Second) {
		t.Fatal("a did not see the connection close")
	}
	if out := a.Outcome(); out != "NOTIFICATION 6/2 (Cease / Administrative Shutdown)" {
		t.Errorf("outcome %q", out)
	}
}

func TestClosedWithoutNotification(t *testing.T) {
	c1, c2 := net.Pipe()
	a := New(c1, cfg(65099, "192.0.2.1", 0))
	defer a.Close()
	c2.Write(Header(Marker, 30, TypeUpdate)) // half a message, then gone
	c2.Close()
	if !a.WaitClosed(5 * time.Second) {
		t.Fatal("not closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := a.WaitOpen(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitOpen on a closed connection: %v", err)
	}
	if s := a.State(); s.CloseErr == nil || a.Outcome() != "connection closed without NOTIFICATION" {
		t.Errorf("state %+v, outcome %q", s, a.Outcome())
	}
}

// TestMD5 checks TCP MD5 both ways, inside a namespace of its own (its
// loopback only): the right key connects, a wrong one or none does not.
func TestMD5(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, false)
	c := testenv.NewCleanup(t)
	ns := testenv.CreateNetns(t, c, netns.NewRunID()+"-md5")
	lo := netip.MustParseAddr("127.0.0.1")
	server := cfg(65001, "192.0.2.1", 0)
	server.Password = "s3cret"
	var ln *Listener
	if err := ns.Do(func() (err error) {
		ln, err = Listen(netip.AddrPortFrom(lo, 0), server, lo)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	dial := func(password string) (*Peer, error) {
		client := cfg(65099, "192.0.2.2", 0)
		client.Password = password
		client.LocalAddr = lo
		var p *Peer
		err := ns.Do(func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			p, err = Dial(ctx, ln.Addr(), client)
			return err
		})
		return p, err
	}

	p, err := dial("s3cret")
	if err != nil {
		t.Fatalf("right key: %v", err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	handshakeBoth(t, p, q)

	for _, pw := range []string{"wrong", ""} {
		if p, err := dial(pw); err == nil {
			p.Close()
			t.Errorf("key %q: connected", pw)
		}
	}
	// Accept gives up when its context ends and the listener stays usable.
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := ln.Accept(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept after its context ended: %v", err)
	}
	if p, err := dial("s3cret"); err != nil {
		t.Errorf("right key after a timed-out Accept: %v", err)
	} else {
		p.Close()
	}
}
