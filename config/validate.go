package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podroute/podroute/routes"
)

// FieldError is one problem with one configuration value.
type FieldError struct {
	// Field is the path of YAML keys with list indexes, e.g. peers[2].address.
	Field string
	// Value is the offending value as written (secrets are not repeated).
	Value string
	// Allowed says what would be accepted, and why when that is not obvious.
	Allowed string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: invalid value %q: %s", e.Field, e.Value, e.Allowed)
}

// FieldErrors returns every *FieldError inside err, however deeply it was
// wrapped or joined, in order. Callers use it to report problems one per
// line or to test for a particular field.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// Limits, with where they come from.
const (
	// AS_TRANS (RFC 6793) stands in for a 4-byte ASN towards 2-byte-only
	// speakers; as anyone's own ASN it breaks AS paths.
	asTrans = 23456
	// RFC 4724: the restart time is a 12-bit field in seconds.
	maxRestartTime = 4095 * time.Second
	// RFC 4271: hold time is 0 or at least 3 seconds, in a 16-bit field.
	minHoldTime = 3 * time.Second
	maxHoldTime = 65535 * time.Second
	// TCP_MD5SIG_MAXKEYLEN in the kernel's include/uapi/linux/tcp.h.
	maxPasswordBytes = 80
	// sun_path in struct sockaddr_un is 108 bytes including the final NUL.
	maxSocketPath   = 107
	maxStaleTimeout = time.Hour
	maxMaxPrefixes  = 10_000_000
)

const maxRouteProtocol = 255 // rtm_protocol is one byte

var logLevels = []string{"debug", "info", "warn", "error"}

// Validate checks the configuration as it will be used, after ApplyDefaults
// and Override. It returns every problem it finds, joined, so that one run
// shows the operator everything to fix; FieldErrors splits them again.
func (c *Config) Validate() error {
	v := &validator{}

	if errs := validation.IsDNS1123Subdomain(c.NodeName); len(errs) > 0 {
		v.add("nodeName", c.NodeName, required(c.NodeName)+"must be the Kubernetes node name, a DNS-1123 subdomain: "+strings.Join(errs, "; "))
	}
	if a, err := netip.ParseAddr(c.RouterID); err != nil || !a.Is4() || a.IsUnspecified() {
		v.add("routerID", c.RouterID, required(c.RouterID)+"must be an IPv4 address in dotted-quad form other than 0.0.0.0 (the BGP identifier is 32 bits, also on IPv6-only nodes)")
	}
	v.asn("asn", c.ASN)

	for i, s := range c.ListenAddresses {
		v.addr(fmt.Sprintf("listenAddresses[%d]", i), s)
	}
	if c.ListenPort != nil && (*c.ListenPort < 0 || *c.ListenPort > 65535) {
		v.add("listenPort", strconv.Itoa(int(*c.ListenPort)), "must be 0 (do not listen) or 1..65535; leave it out for 179")
	}

	pools := v.pools(c.PodPools)
	cidrs := v.podCIDRs(c.PodCIDRs, pools)
	nodeAddrs := map[netip.Addr]string{}
	for i, s := range c.NodeAddresses {
		field := fmt.Sprintf("nodeAddresses[%d]", i)
		if a, ok := v.addr(field, s); ok {
			nodeAddrs[a] = field
		}
	}
	for i, s := range c.ListenAddresses {
		if a, err := netip.ParseAddr(s); err == nil {
			nodeAddrs[a] = fmt.Sprintf("listenAddresses[%d]", i)
		}
	}

	v.routeProtocol(c.RouteProtocol)
	if t := c.RouteTable; t < 1 || t > math.MaxUint32 || t == 253 || t == 255 {
		v.add("routeTable", strconv.Itoa(t), "must be 1..4294967295 except 253 and 255, which the kernel reserves for its default and local tables (254 is main, the default)")
	}
	v.seconds("resyncInterval", c.ResyncInterval, time.Second, 0, false)

	gr := c.GracefulRestart
	v.seconds("gracefulRestart.restartTime", gr.RestartTime, time.Second, maxRestartTime, true)
	v.seconds("gracefulRestart.staleRouteTimeout", gr.StaleRouteTimeout, time.Second, maxStaleTimeout, false)

	if !filepath.IsAbs(c.GRPCSocket) || len(c.GRPCSocket) > maxSocketPath {
		v.add("grpcSocket", c.GRPCSocket, fmt.Sprintf("must be an absolute path of at most %d bytes (the limit of a unix socket address)", maxSocketPath))
	}
	v.gobgpAPI(c.GoBGPAPI)
	if c.MetricsAddress != "" {
		if _, ok := hostPort(c.MetricsAddress, true); !ok {
			v.add("metricsAddress", c.MetricsAddress, `must be empty (metrics off) or host:port with an IP or empty host and port 1..65535, e.g. ":9254" or "127.0.0.1:9254"`)
		}
	}
	for _, f := range []struct{ field, dir string }{{"cniConfDir", c.CNIConfDir}, {"ipamDir", c.IPAMDir}} {
		if f.dir != "" && !filepath.IsAbs(f.dir) {
			v.add(f.field, f.dir, "must be empty or an absolute path")
		}
	}
	if c.CNIMTU != 0 && (c.CNIMTU < 1280 || c.CNIMTU > 65535) {
		v.add("cniMTU", strconv.Itoa(c.CNIMTU), "must be 0 (use the uplink's MTU) or 1280..65535 (1280 is IPv6's minimum)")
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		v.add("logLevel", c.LogLevel, "must be one of "+strings.Join(logLevels, ", "))
	}

	v.peers(c, cidrs, nodeAddrs)
	return errors.Join(v.errs...)
}

type validator struct {
	errs []error
}

func (v *validator) add(field, value, allowed string) {
	v.errs = append(v.errs, &FieldError{Field: field, Value: value, Allowed: allowed})
}

func (v *validator) asn(field string, asn uint32) {
	if asn == 0 || asn == asTrans || asn == math.MaxUint32 {
		v.add(field, strconv.FormatUint(uint64(asn), 10), "must be 1..4294967294 (not 23456, AS_TRANS)")
	}
}

// addr parses an IP address literal. Zones and IPv4-mapped IPv6 forms are
// refused: a zone cannot be carried in BGP or a kernel route, and a mapped
// address would make one peer look like two of different families.
func (v *validator) addr(field, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		v.add(field, s, "must be an IPv4 or IPv6 address (no zone, no ::ffff: mapped form)")
		return netip.Addr{}, false
	}
	return a, true
}

// prefix parses a CIDR that must be written as its network address: a
// host bit set usually means someone pasted an address instead of the
// block, and silently masking it would hide which one they meant.
func (v *validator) prefix(field, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		v.add(field, s, "must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56")
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		v.add(field, s, fmt.Sprintf("must be a network address (no host bits set): use %s", p.Masked()))
		return netip.Prefix{}, false
	}
	return p, true
}

// pools returns the valid pools, or nil if any entry is invalid: checking
// pod CIDRs against a partial list would add errors that are not real.
func (v *validator) pools(ss []string) []netip.Prefix {
	if len(ss) == 0 {
		v.add("podPools", "[]", "required: at least one pool; import accepts only prefixes inside the pod pools")
		return nil
	}
	var out []netip.Prefix
	bad := false
	for i, s := range ss {
		field := fmt.Sprintf("podPools[%d]", i)
		p, ok := v.prefix(field, s)
		if !ok {
			bad = true
			continue
		}
		if p.Bits() == 0 {
			v.add(field, s, "must not be /0: such a pool would let any peer install any route; list the real pools and use importDefaultRoute for the default route")
			bad = true
			continue
		}
		out = append(out, p)
	}
	if bad {
		return nil
	}
	return out
}

// podCIDRs returns the valid pod CIDRs. pools is nil when the pools could
// not all be parsed, and then containment is not checked.
func (v *validator) podCIDRs(ss []string, pools []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	byFamily := map[string]int{} // family → index of its pod CIDR
	for i, s := range ss {
		field := fmt.Sprintf("podCIDRs[%d]", i)
		p, ok := v.prefix(field, s)
		if !ok {
			continue
		}
		fam := family(p.Addr())
		if first, dup := byFamily[fam]; dup {
			v.add(field, s, fmt.Sprintf("at most one pod CIDR per address family: podCIDRs[%d] is already %s", first, fam))
			continue
		}
		byFamily[fam] = i
		out = append(out, p)
		if pools == nil {
			continue
		}
		var sameFamily []string
		inside := false
		for _, pool := range pools {
			if family(pool.Addr()) != fam {
				continue
			}
			sameFamily = append(sameFamily, pool.String())
			if pool.Bits() <= p.Bits() && pool.Contains(p.Addr()) {
				inside = true
			}
		}
		switch {
		case len(sameFamily) == 0:
			v.add(field, s, fmt.Sprintf("must lie inside a pod pool, and podPools has no %s pool", fam))
		case !inside:
			v.add(field, s, fmt.Sprintf("must lie inside one of the %s podPools: %s", fam, strings.Join(sameFamily, ", ")))
		}
	}
	return out
}

// routeProtocol checks the number against routes.ReservedProtocols, the
// list the reconciler itself enforces, so the two cannot disagree.
func (v *validator) routeProtocol(n int) {
	if n >= 0 && n <= maxRouteProtocol {
		if r, reserved := routes.ReservedProtocol(uint8(n)); reserved {
			v.add("routeProtocol", strconv.Itoa(n), fmt.Sprintf("must be one of %s, numbers no other routing software uses (%s: %s)", allowedProtocols(), span(int(r.Lo), int(r.Hi)), r.Owners()))
			return
		}
	}
	if n > maxRouteProtocol {
		v.add("routeProtocol", strconv.Itoa(n), "must be one of "+allowedProtocols()+" (the kernel's route protocol is one byte)")
	}
	if n < 0 {
		v.add("routeProtocol", strconv.Itoa(n), "must be one of "+allowedProtocols())
	}
}

// allowedProtocols spells out the gaps between routes.ReservedProtocols,
// so the message and the check cannot disagree.
func allowedProtocols() string {
	var spans []string
	next := 0
	for _, r := range routes.ReservedProtocols {
		if int(r.Lo) > next {
			spans = append(spans, span(next, int(r.Lo)-1))
		}
		next = int(r.Hi) + 1
	}
	if next <= maxRouteProtocol {
		spans = append(spans, span(next, maxRouteProtocol))
	}
	return strings.Join(spans, ", ")
}

func span(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

// seconds checks a duration against [lo, hi] (hi 0 = no upper bound).
// wholeSeconds is for timers that BGP carries as whole seconds, where a
// fraction would be silently cut off.
func (v *validator) seconds(field string, d metav1.Duration, lo, hi time.Duration, wholeSeconds bool) bool {
	bad := d.Duration < lo || (hi > 0 && d.Duration > hi) || (wholeSeconds && d.Duration%time.Second != 0)
	if !bad {
		return true
	}
	allowed := "must be at least " + lo.String()
	if hi > 0 {
		allowed = fmt.Sprintf("must be %s..%s", lo, hi)
	}
	if wholeSeconds {
		allowed += " in whole seconds"
	}
	v.add(field, d.Duration.String(), allowed)
	return false
}

func (v *validator) gobgpAPI(s string) {
	if s == GoBGPAPIOff {
		return
	}
	host, ok := hostPort(s, false)
	if !ok || !host.IsLoopback() {
		v.add("gobgpAPI", s, `must be "off" or host:port on a loopback IP (127.0.0.0/8 or [::1]), e.g. "127.0.0.1:50051": the GoBGP API has no authentication, so whoever reaches it can rewrite this node's routes`)
	}
}

// hostPort splits an address of the form host:port where host is an IP
// literal (or empty, if allowed) and port is 1..65535. Host names are
// refused: what they resolve to can change behind the operator's back.
func hostPort(s string, emptyHost bool) (netip.Addr, bool) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	if port, err := strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
		return netip.Addr{}, false
	}
	if h == "" {
		return netip.Addr{}, emptyHost
	}
	a, err := netip.ParseAddr(h)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

func (v *validator) peers(c *Config, podCIDRs []netip.Prefix, own map[netip.Addr]string) {
	seen := map[netip.Addr]int{} // address → index of the first peer with it
	for i, p := range c.Peers {
		f := func(key string) string { return fmt.Sprintf("peers[%d].%s", i, key) }

		a, ok := v.addr(f("address"), p.Address)
		if ok {
			v.peerAddress(f("address"), p.Address, a, podCIDRs, own)
			if first, dup := seen[a]; dup {
				v.add(f("address"), p.Address, fmt.Sprintf("must be unique: peers[%d].address %q is the same address", first, c.Peers[first].Address))
			} else {
				seen[a] = i
			}
		}
		v.asn(f("asn"), p.ASN)
		if p.LocalAddress != "" {
			if la, lok := v.addr(f("localAddress"), p.LocalAddress); lok && ok && la.Is4() != a.Is4() {
				v.add(f("localAddress"), p.LocalAddress, fmt.Sprintf("must be an %s address like address %q", family(a), p.Address))
			}
		}
		if p.Port < 1 || p.Port > 65535 {
			v.add(f("port"), strconv.Itoa(int(p.Port)), "must be 1..65535; leave it out for 179")
		}
		if p.Passive && c.Port() == 0 {
			v.add(f("passive"), "true", "a passive peer waits for the other side to connect, but listenPort is 0 so nothing listens")
		}
		// An explicit hold time of 0 (RFC 4271: no keepalives) is not
		// offered: GoBGP turns 0 into its 90s default, and a session
		// without a hold timer keeps a dead peer's routes forever.
		holdOK := v.seconds(f("holdTime"), p.HoldTime, minHoldTime, maxHoldTime, true)
		ka := p.KeepaliveInterval.Duration
		if ka < time.Second || ka%time.Second != 0 || (holdOK && ka >= p.HoldTime.Duration) {
			v.add(f("keepaliveInterval"), ka.String(), fmt.Sprintf("must be whole seconds, at least 1s and less than holdTime (%s); leave it out for a third of holdTime", p.HoldTime.Duration))
		}
		v.seconds(f("connectRetry"), p.ConnectRetry, time.Second, 0, true)
		if len(p.Password) > maxPasswordBytes {
			// The value is a secret: say how long it is, not what it is.
			v.add(f("password"), fmt.Sprintf("<%d bytes>", len(p.Password)), fmt.Sprintf("must be at most %d bytes (the kernel's TCP MD5 key limit)", maxPasswordBytes))
		}
		if p.MaxPrefixes < 1 || p.MaxPrefixes > maxMaxPrefixes {
			v.add(f("maxPrefixes"), strconv.FormatUint(uint64(p.MaxPrefixes), 10), fmt.Sprintf("must be 1..%d; leave it out for %d (there is no unlimited)", maxMaxPrefixes, DefaultMaxPrefixes))
		}
	}
}

// peerAddress refuses peer addresses that cannot be a neighbour: addresses
// that are not unicast, a pod's address on this very node, or this node's
// own address.
func (v *validator) peerAddress(field, s string, a netip.Addr, podCIDRs []netip.Prefix, own map[netip.Addr]string) {
	if a.IsUnspecified() || a.IsMulticast() {
		v.add(field, s, "must be a unicast address")
		return
	}
	for _, p := range podCIDRs {
		if p.Contains(a) {
			v.add(field, s, fmt.Sprintf("must not be inside this node's pod CIDR %s: that is the address of a pod on this node", p))
			return
		}
	}
	if where, mine := own[a]; mine {
		v.add(field, s, fmt.Sprintf("must not be this node's own address (%s)", where))
	}
}

// required prefixes the message for a mandatory value that is missing
// rather than wrong.
func required(value string) string {
	if value == "" {
		return "required; "
	}
	return ""
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
