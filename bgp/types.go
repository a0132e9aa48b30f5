package bgp

import (
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// Config is the speaker's global configuration.
type Config struct {
	ASN      uint32
	RouterID netip.Addr
	// ListenAddresses limits where the speaker accepts connections; empty
	// means all addresses.
	ListenAddresses []netip.Addr
	// ListenPort is the TCP port for incoming sessions; 0 means do not
	// listen (sessions are then only initiated by this side).
	ListenPort int32
	// RestartTime is the RFC 4724 restart time advertised to peers with
	// graceful restart: how long they keep our routes while we restart.
	RestartTime time.Duration
	// Restarting says this process took over forwarding state (kernel
	// routes) from a previous run: the OPEN carries the Restart State and
	// Forwarding State bits, so helpers keep our routes until our
	// End-of-RIB instead of flushing them.
	Restarting bool
	// Multipath installs all equal-cost paths, not only the best one.
	Multipath bool
	// MaxPrefixHold is how long a peer torn down for exceeding its
	// prefix limit is kept down before it may try again (30s when 0).
	MaxPrefixHold time.Duration
	// FastReconnect re-creates a peer whose session was lost, and whose
	// routes GoBGP drops anyway (no graceful restart for its family), so
	// that it reconnects at once instead of after GoBGP's fixed 5 s idle
	// hold. At most once per fastReconnectDamping per peer.
	FastReconnect bool
	Logger        *slog.Logger
}

// Peer is one BGP neighbor as podroute wants it. All fields are
// comparable, so "did this peer change" is a plain ==.
type Peer struct {
	Address      netip.Addr
	ASN          uint32
	Description  string
	LocalAddress netip.Addr
	// Port is the peer's TCP port (179 when 0).
	Port              uint16
	Passive           bool
	HoldTime          time.Duration
	KeepaliveInterval time.Duration
	ConnectRetry      time.Duration
	// MultihopTTL > 0 allows an eBGP peer that many hops away.
	MultihopTTL uint8
	// Password enables TCP MD5 signatures (RFC 2385).
	Password string
	// MaxPrefixes tears the session down when the peer sends more
	// prefixes than this (0: no limit).
	MaxPrefixes     uint32
	GracefulRestart bool
	// RouteReflectorClient makes this (iBGP) peer a client of ours: we
	// reflect routes to it. RouteReflectorClusterID is our cluster ID.
	RouteReflectorClient    bool
	RouteReflectorClusterID string
}

// Policy is what the speaker accepts from and sends to peers.
type Policy struct {
	// PodPools are the only ranges accepted on import (prefixes inside
	// them, any length).
	PodPools []netip.Prefix
	// ImportDefaultRoute accepts 0.0.0.0/0 and ::/0 as well.
	ImportDefaultRoute bool
	// Transit exports every best path, not only this node's own prefixes.
	Transit bool
	// ProtectedAddrs are node addresses: a prefix covering one of them is
	// rejected, so a peer cannot steal the path to a node or to itself.
	// Peer and local session addresses are added automatically.
	ProtectedAddrs []netip.Addr
}

// RouteUpdate is a best-path change for one prefix. Empty NextHops means
// the prefix is gone. NextHops are sorted and shared between updates:
// read them, never modify them.
type RouteUpdate struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

// PeerStatus is a peer's live state for status output.
type PeerStatus struct {
	Peer       Peer
	State      string
	StateSince time.Time
	Received   uint64
	Accepted   uint64
	Advertised uint64
	// Info is the last notable problem, such as a max-prefix teardown.
	Info string
}

// Advertisement is a prefix this node originates besides its pod CIDRs,
// such as a Service address or range. The export policy sends it to every
// peer; the communities tag it, so routers can tell it from pod routes.
type Advertisement struct {
	Prefix netip.Prefix
	// Communities are RFC 1997 communities, each ASN<<16 | value.
	Communities []uint32
	// LargeCommunities are RFC 8092 large communities (global
	// administrator, local data 1, local data 2).
	LargeCommunities [][3]uint32
}

func (a Advertisement) equal(b Advertisement) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities)
}
