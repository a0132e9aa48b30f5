package config

import (
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/internal/community"
)

// Defaults. They are exported so that flag help texts and the lab generator
// quote the same numbers the daemon uses.
const (
	DefaultListenPort     int32 = 179
	DefaultPeerPort       int32 = 179
	DefaultRouteProtocol        = 201
	DefaultRouteTable           = 254 // the kernel's main table
	DefaultResyncInterval       = 30 * time.Second
	DefaultGRPCSocket           = "/run/podroute/podrouted.sock"
	DefaultGoBGPAPI             = "127.0.0.1:50051"
	DefaultLogLevel             = "info"
	DefaultRestartTime          = 120 * time.Second
	DefaultHoldTime             = 90 * time.Second
	// DefaultConnectRetry is GoBGP's floor: it never waits less than 2 s
	// between connection attempts.
	DefaultConnectRetry        = 2 * time.Second
	DefaultMaxPrefixes  uint32 = 10000
	// DefaultMaxPrefixHoldTime is how long a peer torn down for exceeding
	// its maxPrefixes stays down before it may connect again.
	DefaultMaxPrefixHoldTime = 30 * time.Second

	// GoBGPAPIOff as the value of gobgpAPI turns the GoBGP gRPC API off.
	GoBGPAPIOff = "off"
)

// Config is the podrouted configuration file. The json tags are the YAML
// keys: sigs.k8s.io/yaml converts YAML to JSON before decoding.
//
// A zero value in a field with a default means "use the default"; where a
// zero is itself a meaningful setting (listenPort: 0, gracefulRestart.enabled:
// false) the field is a pointer so that "absent" (nil) and "zero" differ.
type Config struct {
	// NodeName is the Kubernetes node name, a DNS-1123 subdomain.
	NodeName string `json:"nodeName"`
	// RouterID is the BGP identifier, an IPv4 address even on IPv6-only nodes.
	RouterID string `json:"routerID"`
	// ASN is this node's autonomous system number.
	ASN uint32 `json:"asn"`
	// ListenAddresses are the IPs the BGP listener binds; empty means all.
	ListenAddresses []string `json:"listenAddresses,omitempty"`
	// ListenPort is the BGP listen port. nil (key absent) means
	// DefaultListenPort; 0 means do not listen (active peers only). Read it
	// with Port.
	ListenPort *int32 `json:"listenPort,omitempty"`
	// PodCIDRs are this node's pod CIDRs, at most one per address family.
	PodCIDRs []string `json:"podCIDRs"`
	// PodPools are the cluster's pod address pools. Import accepts only
	// prefixes inside them, and every pod CIDR must lie inside one.
	PodPools []string `json:"podPools"`
	// NodeAddresses are further addresses of this node that import must
	// protect: a learned prefix covering one of them is rejected.
	NodeAddresses []string `json:"nodeAddresses,omitempty"`
	// ImportDefaultRoute accepts a default route from peers.
	ImportDefaultRoute bool `json:"importDefaultRoute,omitempty"`
	// Transit re-advertises learned pod prefixes instead of only this node's.
	Transit bool `json:"transit,omitempty"`
	// RouteProtocol marks every kernel route podroute writes (0 = default).
	RouteProtocol int `json:"routeProtocol,omitempty"`
	// RouteTable is the kernel routing table podroute writes (0 = default).
	RouteTable int `json:"routeTable,omitempty"`
	// FastReconnect (nil: on) re-creates a peer whose session failed and
	// whose routes were dropped anyway (no graceful restart for its
	// family), so that it reconnects at once rather than after GoBGP's
	// fixed 5 s idle hold. Read it with FastReconnectEnabled.
	FastReconnect *bool `json:"fastReconnect,omitempty"`
	// MaxPrefixHoldTime is how long a peer torn down for sending more than
	// its maxPrefixes is kept down before it may connect again.
	MaxPrefixHoldTime metav1.Duration `json:"maxPrefixHoldTime,omitzero"`
	// GracefulRestart configures RFC 4724 graceful restart and the daemon's
	// own restart behaviour.
	GracefulRestart GracefulRestart `json:"gracefulRestart"`
	// ResyncInterval is how often the kernel routes are reconciled even
	// without events, so that drift repairs itself.
	ResyncInterval metav1.Duration `json:"resyncInterval,omitzero"`
	// GRPCSocket is the unix socket of the status API the podroute CLI uses.
	GRPCSocket string `json:"grpcSocket,omitempty"`
	// GoBGPAPI is where the embedded GoBGP's own gRPC API listens, or "off".
	GoBGPAPI string `json:"gobgpAPI,omitempty"`
	// MetricsAddress is the Prometheus listen address; empty means off.
	MetricsAddress string `json:"metricsAddress,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// CNIConfDir is where podrouted writes the CNI network configuration
	// (10-podroute.conflist, for podroute-cni) once the node's pod CIDRs
	// are known; empty means podrouted writes none.
	CNIConfDir string `json:"cniConfDir,omitempty"`
	// CNIMTU is the pod interface MTU put into that configuration; 0 lets
	// the plugin use the MTU of the node's uplink.
	CNIMTU int `json:"cniMTU,omitempty"`
	// CNIVersion is the CNI spec version that configuration asks every
	// plugin to speak (empty: cni.DefaultCNIVersion, 1.0.0, which
	// containerd 1.6 and 1.7 accept).
	CNIVersion string `json:"cniVersion,omitempty"`
	// CNIChain are the plugins chained after podroute-cni, in order: nil
	// (key absent) means cni.DefaultChain(), portmap and bandwidth; an
	// empty list means none.
	CNIChain []string `json:"cniChain,omitzero"`
	// IPAMDir is podroute-cni's allocation store (empty: the plugin's
	// default, /var/lib/podroute/ipam).
	IPAMDir string `json:"ipamDir,omitempty"`
	// NetworkPolicy turns enforcement of Kubernetes NetworkPolicy for this
	// node's pods on (nil, key absent: on) or off. Kubernetes mode only.
	NetworkPolicy *bool `json:"networkPolicy,omitempty"`
	// Peers are the static BGP peers.
	Peers []Peer `json:"peers,omitempty"`
	// ServicePrefixes are prefixes this node originates besides its pod
	// CIDRs, such as the Service ClusterIP range kube-proxy serves on
	// every node. Static mode only: without Service objects there is
	// nothing to advertise per address (Kubernetes mode takes its service
	// ranges from BGPConfiguration).
	ServicePrefixes []ServicePrefix `json:"servicePrefixes,omitempty"`

	// read is what Read found beyond the values themselves (see Read);
	// zero for a Config built in code.
	read readNotes
}

// readNotes is what decoding leaves for Validate.
type readNotes struct {
	// problems are the values Read left out (wrong type, out of range of
	// their field, unknown key), one *FieldError each; left holds their
	// paths, so that Validate does not also complain that they are missing.
	problems []error
	left     []string
	// written holds each duration as the file wrote it ("65536s"), so that
	// a message quotes that and not Go's normalised form ("18h12m16s").
	written map[string]string
}

// GracefulRestart configures graceful restart (RFC 4724) for all peers.
type GracefulRestart struct {
	// Enabled is nil when absent, which means on. Read it with IsEnabled.
	Enabled *bool `json:"enabled,omitempty"`
	// RestartTime is what this node asks peers to wait for it to come back.
	RestartTime metav1.Duration `json:"restartTime,omitzero"`
	// StaleRouteTimeout bounds how long kernel routes adopted from a
	// previous run are kept while waiting to be re-learned; after it,
	// routes not re-learned are removed even without End-of-RIB.
	StaleRouteTimeout metav1.Duration `json:"staleRouteTimeout,omitzero"`
}

// Peer is one static BGP neighbour.
type Peer struct {
	Address      string `json:"address"`
	ASN          uint32 `json:"asn"`
	Description  string `json:"description,omitempty"`
	LocalAddress string `json:"localAddress,omitempty"`
	// Port is the peer's BGP port (0 = DefaultPeerPort).
	Port    int32 `json:"port,omitempty"`
	Passive bool  `json:"passive,omitempty"`
	// HoldTime 0 means DefaultHoldTime; see validate.go for why an
	// explicit zero hold time (no keepalives) is not offered.
	HoldTime metav1.Duration `json:"holdTime,omitzero"`
	// KeepaliveInterval 0 means a third of HoldTime.
	KeepaliveInterval metav1.Duration `json:"keepaliveInterval,omitzero"`
	ConnectRetry      metav1.Duration `json:"connectRetry,omitzero"`
	// MultihopTTL 0 means directly connected (no eBGP multihop).
	MultihopTTL uint8 `json:"multihopTTL,omitempty"`
	// Password is the TCP MD5 signature key (RFC 2385).
	Password string `json:"password,omitempty"`
	// MaxPrefixes 0 (absent) means DefaultMaxPrefixes. There is no
	// "unlimited": a peer that floods the node must hit a limit.
	MaxPrefixes uint32 `json:"maxPrefixes,omitempty"`
	// GracefulRestart nil means follow Config.GracefulRestart. Read it with
	// GREnabled.
	GracefulRestart *bool `json:"gracefulRestart,omitempty"`
}

// ServicePrefix is one prefix of servicePrefixes.
type ServicePrefix struct {
	CIDR string `json:"cidr"`
	// Communities ("ASN:value") and LargeCommunities
	// ("global:local1:local2") tag the prefix for the routers.
	Communities      []string `json:"communities,omitempty"`
	LargeCommunities []string `json:"largeCommunities,omitempty"`
}

// ServicePrefixValue is a ServicePrefix as typed values.
type ServicePrefixValue struct {
	Prefix           netip.Prefix
	Communities      []uint32
	LargeCommunities [][3]uint32
}

// FastReconnectEnabled reads FastReconnect (on unless set to false).
func (c *Config) FastReconnectEnabled() bool { return c.FastReconnect == nil || *c.FastReconnect }

// NetworkPolicyEnabled reads NetworkPolicy (on unless set to false).
func (c *Config) NetworkPolicyEnabled() bool { return c.NetworkPolicy == nil || *c.NetworkPolicy }

// ApplyDefaults fills every unset field with its default. It only writes
// zero-valued fields, so calling it twice changes nothing, and it never
// overwrites what the file or Override set.
func (c *Config) ApplyDefaults() {
	if c.ListenPort == nil {
		port := DefaultListenPort
		c.ListenPort = &port
	}
	if c.RouteProtocol == 0 {
		c.RouteProtocol = DefaultRouteProtocol
	}
	if c.RouteTable == 0 {
		c.RouteTable = DefaultRouteTable
	}
	setDuration(&c.ResyncInterval, DefaultResyncInterval)
	setDuration(&c.MaxPrefixHoldTime, DefaultMaxPrefixHoldTime)
	if c.GRPCSocket == "" {
		c.GRPCSocket = DefaultGRPCSocket
	}
	if c.GoBGPAPI == "" {
		c.GoBGPAPI = DefaultGoBGPAPI
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.CNIVersion == "" {
		c.CNIVersion = cni.DefaultCNIVersion
	}
	if c.CNIChain == nil {
		c.CNIChain = cni.DefaultChain()
	}

	gr := &c.GracefulRestart
	if gr.Enabled == nil {
		enabled := true
		gr.Enabled = &enabled
	}
	setDuration(&gr.RestartTime, DefaultRestartTime)
	// At most the longest stale timeout Validate allows: restartTime may
	// be longer (4095s), and a default must not fail validation.
	setDuration(&gr.StaleRouteTimeout, min(gr.RestartTime.Duration, maxStaleTimeout))

	for i := range c.Peers {
		p := &c.Peers[i]
		if p.Port == 0 {
			p.Port = DefaultPeerPort
		}
		setDuration(&p.HoldTime, DefaultHoldTime)
		// Whole seconds, because BGP timers are whole seconds on the wire.
		setDuration(&p.KeepaliveInterval, (p.HoldTime.Duration / 3).Truncate(time.Second))
		setDuration(&p.ConnectRetry, DefaultConnectRetry)
		if p.MaxPrefixes == 0 {
			p.MaxPrefixes = DefaultMaxPrefixes
		}
		// p.GracefulRestart stays nil: "follow the global setting" is
		// kept as such rather than frozen to today's global value.
	}
}

func setDuration(d *metav1.Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

// Port is the BGP listen port: DefaultListenPort when listenPort is absent,
// 0 when the daemon must not listen.
func (c *Config) Port() int32 {
	if c.ListenPort == nil {
		return DefaultListenPort
	}
	return *c.ListenPort
}

// GoBGPAPIEnabled reports whether the GoBGP gRPC API should listen.
func (c *Config) GoBGPAPIEnabled() bool {
	return c.GoBGPAPI != GoBGPAPIOff
}

// IsEnabled reports whether graceful restart is on; it is unless the file
// says enabled: false.
func (g GracefulRestart) IsEnabled() bool {
	return g.Enabled == nil || *g.Enabled
}

// GREnabled reports whether graceful restart is on for this peer, given the
// global setting (Config.GracefulRestart.IsEnabled()).
func (p Peer) GREnabled(global bool) bool {
	if p.GracefulRestart == nil {
		return global
	}
	return *p.GracefulRestart
}

// The typed accessors below assume Validate passed. Should they meet a
// value that does not parse anyway, they skip it (or return the zero
// value) rather than panic in a running daemon.

// PodCIDRPrefixes returns this node's pod CIDRs.
func (c *Config) PodCIDRPrefixes() []netip.Prefix { return prefixes(c.PodCIDRs) }

// PodPoolPrefixes returns the pod pools.
func (c *Config) PodPoolPrefixes() []netip.Prefix { return prefixes(c.PodPools) }

// ServicePrefixValues returns servicePrefixes as typed values.
func (c *Config) ServicePrefixValues() []ServicePrefixValue {
	var out []ServicePrefixValue
	for _, sp := range c.ServicePrefixes {
		p, err := netip.ParsePrefix(sp.CIDR)
		if err != nil {
			continue
		}
		v := ServicePrefixValue{Prefix: p}
		for _, s := range sp.Communities {
			if c, err := community.ParseStandard(s); err == nil {
				v.Communities = append(v.Communities, c)
			}
		}
		for _, s := range sp.LargeCommunities {
			if c, err := community.ParseLarge(s); err == nil {
				v.LargeCommunities = append(v.LargeCommunities, c)
			}
		}
		out = append(out, v)
	}
	return out
}

// NodeAddrs returns the extra node addresses import protects.
func (c *Config) NodeAddrs() []netip.Addr { return addrs(c.NodeAddresses) }

// ListenAddrs returns the BGP listen addresses (empty means all).
func (c *Config) ListenAddrs() []netip.Addr { return addrs(c.ListenAddresses) }

// RouterIDAddr returns the router ID.
func (c *Config) RouterIDAddr() netip.Addr { return addr(c.RouterID) }

// Addr returns the peer's address.
func (p Peer) Addr() netip.Addr { return addr(p.Address) }

// LocalAddr returns the local address to use for the session; the zero
// Addr when none is configured.
func (p Peer) LocalAddr() netip.Addr { return addr(p.LocalAddress) }

func prefixes(ss []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func addrs(ss []string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func addr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// Overrides are command-line values that take precedence over the file.
// A zero field means "not given on the command line".
type Overrides struct {
	NodeName   string
	RouterID   string
	ASN        uint32
	PodCIDRs   []string
	GRPCSocket string
	LogLevel   string
}

// Override replaces the fields o sets. Call it before ApplyDefaults and
// Validate so that an overriding value is validated like any other.
func (c *Config) Override(o Overrides) {
	if o.NodeName != "" {
		c.NodeName = o.NodeName
	}
	if o.RouterID != "" {
		c.RouterID = o.RouterID
	}
	if o.ASN != 0 {
		c.ASN = o.ASN
	}
	if len(o.PodCIDRs) > 0 {
		// A copy, so that the caller's flag slice and the config never alias.
		c.PodCIDRs = append([]string(nil), o.PodCIDRs...)
	}
	if o.GRPCSocket != "" {
		c.GRPCSocket = o.GRPCSocket
	}
	if o.LogLevel != "" {
		c.LogLevel = o.LogLevel
	}
}
