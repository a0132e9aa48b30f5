package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/internal/community"
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
	// The path holds keys as written too: an unknown key can be long.
	field := shorten(e.Field)
	if len(e.Value) > maxShownValue {
		return fmt.Sprintf("%s: invalid value %q (%d bytes): %s", field, shorten(e.Value), len(e.Value), e.Allowed)
	}
	return fmt.Sprintf("%s: invalid value %q: %s", field, e.Value, e.Allowed)
}

// maxShownValue is how much of a value a message repeats: enough to
// recognise it, not a 10 MB paste echoed into the log.
const maxShownValue = 64

// shorten cuts s to maxShownValue bytes (on a character boundary) and
// marks the cut with an ellipsis.
func shorten(s string) string {
	if len(s) <= maxShownValue {
		return s
	}
	cut := maxShownValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
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

// What the integer keys allow, in one place: Validate's range checks and
// Read's type checks (a string, a fraction, or a number too large for the
// field's Go type) say the same thing about the same key.
const (
	asnAllowed        = "must be 1..4294967294 (not 23456, AS_TRANS)"
	listenPortAllowed = "must be 0 (do not listen) or 1..65535; leave it out for 179"
	routeTableAllowed = "must be 1..4294967295 except 253 and 255, which the kernel reserves for its default and local tables (254 is main, the default)"
	cniMTUAllowed     = "must be 0 (use the uplink's MTU) or 1280..65535 (1280 is IPv6's minimum)"
	peerPortAllowed   = "must be 1..65535; leave it out for 179"
	multihopAllowed   = "must be 0..255: the eBGP multihop TTL, 0 (the default) for a directly connected neighbour"
)

var maxPrefixesAllowed = fmt.Sprintf("must be 1..%d; leave it out for %d (there is no unlimited)", maxMaxPrefixes, DefaultMaxPrefixes)

// numberRules maps each integer key (list indexes written as []) to what
// it allows. TestEveryIntegerKeyHasARule keeps it complete.
var numberRules = map[string]string{
	"asn":                 asnAllowed,
	"listenPort":          listenPortAllowed,
	"routeProtocol":       "must be one of " + allowedProtocols(),
	"routeTable":          routeTableAllowed,
	"cniMTU":              cniMTUAllowed,
	"peers[].asn":         asnAllowed,
	"peers[].port":        peerPortAllowed,
	"peers[].multihopTTL": multihopAllowed,
	"peers[].maxPrefixes": maxPrefixesAllowed,
}

var listIndex = regexp.MustCompile(`\[[0-9]+\]`)

// numberRule is what the integer key at path allows; for a key without a
// rule (there should be none), the range of its Go type.
func numberRule(path string, t reflect.Type) string {
	if rule, ok := numberRules[listIndex.ReplaceAllString(path, "[]")]; ok {
		return rule
	}
	if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
		return fmt.Sprintf("must be a whole number 0..%d", uint64(1)<<t.Bits()-1)
	}
	return fmt.Sprintf("must be a whole number %d..%d", -(int64(1) << (t.Bits() - 1)), int64(1)<<(t.Bits()-1)-1)
}

var logLevels = []string{"debug", "info", "warn", "error"}

// Validate checks the configuration as it will be used, after ApplyDefaults
// and Override. It returns every problem it finds, joined, so that one run
// shows the operator everything to fix; FieldErrors splits them again.
//
// Problems Read found (values it left out) come first; checks that would
// only repeat them, such as "required" for a value left out, are dropped.
func (c *Config) Validate() error {
	v := &validator{written: c.read.written}

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
		v.add("listenPort", strconv.Itoa(int(*c.ListenPort)), listenPortAllowed)
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
	// Without nodeAddresses, the router ID is the one address known to be
	// this node's (it usually is the node's IPv4 address). With them, the
	// router ID may be any 32-bit identifier and says nothing.
	if len(c.NodeAddresses) == 0 {
		if a, err := netip.ParseAddr(c.RouterID); err == nil {
			if _, listed := nodeAddrs[a]; !listed {
				nodeAddrs[a] = "routerID, taken as this node's address because nodeAddresses is empty"
			}
		}
	}

	v.routeProtocol(c.RouteProtocol)
	if t := c.RouteTable; t < 1 || t > math.MaxUint32 || t == 253 || t == 255 {
		v.add("routeTable", strconv.Itoa(t), routeTableAllowed)
	}
	v.seconds("resyncInterval", c.ResyncInterval, time.Second, 0, false)
	v.seconds("maxPrefixHoldTime", c.MaxPrefixHoldTime, time.Second, time.Hour, false)

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
		v.add("cniMTU", strconv.Itoa(c.CNIMTU), cniMTUAllowed)
	}
	if !slices.Contains(cni.SupportedVersions, c.CNIVersion) {
		v.add("cniVersion", c.CNIVersion, fmt.Sprintf("must be one of %s, the CNI versions podroute-cni speaks; leave it out for %s, which containerd 1.6 and 1.7 accept (they refuse 1.1.0)",
			strings.Join(cni.SupportedVersions, ", "), cni.DefaultCNIVersion))
	}
	seenChain := map[string]int{}
	for i, typ := range c.CNIChain {
		field := fmt.Sprintf("cniChain[%d]", i)
		if !slices.Contains(cni.ChainPluginTypes(), typ) {
			v.add(field, typ, fmt.Sprintf("must be one of %s (plugins podrouted can chain after podroute-cni); [] for none", strings.Join(cni.ChainPluginTypes(), ", ")))
		} else if first, dup := seenChain[typ]; dup {
			v.add(field, typ, fmt.Sprintf("must be listed once: cniChain[%d] is already %s", first, typ))
		} else {
			seenChain[typ] = i
		}
	}
	if !slices.Contains(logLevels, c.LogLevel) {
		v.add("logLevel", c.LogLevel, "must be one of "+strings.Join(logLevels, ", "))
	}

	v.peers(c, cidrs, nodeAddrs)
	v.servicePrefixes(c.ServicePrefixes, pools, cidrs)

	errs := slices.Clone(c.read.problems)
	for _, err := range v.errs {
		if fe, ok := err.(*FieldError); !ok || !c.read.leftOut(fe.Field) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leftOut reports whether field is, or is inside, a value Read left out.
func (r readNotes) leftOut(field string) bool {
	for _, p := range r.left {
		if field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[") {
			return true
		}
	}
	return false
}

type validator struct {
	errs []error
	// written holds durations as the file wrote them (readNotes.written).
	written map[string]string
}

// duration is d as the file wrote it when it still holds that value (an
// override or a default may have replaced it), else Go's form of it.
func (v *validator) duration(field string, d time.Duration) string {
	if w, ok := v.written[field]; ok {
		if parsed, err := time.ParseDuration(w); err == nil && parsed == d {
			return w
		}
	}
	return d.String()
}

func (v *validator) add(field, value, allowed string) {
	v.errs = append(v.errs, &FieldError{Field: field, Value: value, Allowed: allowed})
}

func (v *validator) asn(field string, asn uint32) {
	if asn == 0 || asn == asTrans || asn == math.MaxUint32 {
		v.add(field, strconv.FormatUint(uint64(asn), 10), asnAllowed)
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

// servicePrefixes checks the extra prefixes this node originates: each a
// network CIDR, listed once, and clear of the pod pools and this node's
// pod CIDRs (a service prefix inside a pool would be accepted, and
// routed, by every other node as if it were pods).
func (v *validator) servicePrefixes(sps []ServicePrefix, pools, cidrs []netip.Prefix) {
	seen := map[netip.Prefix]int{}
	for i, sp := range sps {
		field := fmt.Sprintf("servicePrefixes[%d]", i)
		p, ok := v.prefix(field+".cidr", sp.CIDR)
		if ok && p.Bits() == 0 {
			v.add(field+".cidr", sp.CIDR, "must not be a default route (/0)")
			ok = false
		}
		if ok {
			if first, dup := seen[p]; dup {
				v.add(field+".cidr", sp.CIDR, fmt.Sprintf("must be listed once: servicePrefixes[%d] is already %s", first, p))
			} else {
				seen[p] = i
			}
			for _, q := range append(slices.Clone(pools), cidrs...) {
				if q.Overlaps(p) {
					v.add(field+".cidr", sp.CIDR, fmt.Sprintf("must not overlap the pod pools or this node's pod CIDRs (%s): other nodes would route it as pods", q))
					break
				}
			}
		}
		for j, s := range sp.Communities {
			if _, err := community.ParseStandard(s); err != nil {
				v.add(fmt.Sprintf("%s.communities[%d]", field, j), s, "must be ASN:value, two numbers 0..65535 (e.g. 64512:100)")
			}
		}
		for j, s := range sp.LargeCommunities {
			if _, err := community.ParseLarge(s); err != nil {
				v.add(fmt.Sprintf("%s.largeCommunities[%d]", field, j), s, "must be global:local1:local2, three numbers 0..4294967295 (e.g. 64512:1:100)")
			}
		}
	}
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
	allowed := "must be at least " + durationBound(lo)
	if hi > 0 {
		allowed = fmt.Sprintf("must be %s..%s", durationBound(lo), durationBound(hi))
	}
	if wholeSeconds {
		allowed += " in whole seconds"
	}
	v.add(field, v.duration(field, d.Duration), allowed)
	return false
}

// durationBound writes a limit the way REFERENCE.md does ("4095s",
// "1h"), not as Go's "1h8m15s".
func durationBound(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
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
			v.add(f("port"), strconv.Itoa(int(p.Port)), peerPortAllowed)
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
			v.add(f("keepaliveInterval"), v.duration(f("keepaliveInterval"), ka), fmt.Sprintf("must be whole seconds, at least 1s and less than holdTime (%s); leave it out for a third of holdTime", v.duration(f("holdTime"), p.HoldTime.Duration)))
		}
		v.seconds(f("connectRetry"), p.ConnectRetry, time.Second, 0, true)
		if len(p.Password) > maxPasswordBytes {
			// The value is a secret: say how long it is, not what it is.
			v.add(f("password"), fmt.Sprintf("<%d bytes>", len(p.Password)), fmt.Sprintf("must be at most %d bytes (the kernel's TCP MD5 key limit)", maxPasswordBytes))
		}
		if p.MaxPrefixes < 1 || p.MaxPrefixes > maxMaxPrefixes {
			v.add(f("maxPrefixes"), strconv.FormatUint(uint64(p.MaxPrefixes), 10), maxPrefixesAllowed)
		}
	}
}

// limitedBroadcast is 255.255.255.255 (RFC 919), which netip has no test for.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// peerAddress refuses peer addresses that cannot be a neighbour: addresses
// that are not unicast, loopback and IPv4 link-local addresses, a pod's
// address on this very node, or this node's own address.
func (v *validator) peerAddress(field, s string, a netip.Addr, podCIDRs []netip.Prefix, own map[netip.Addr]string) {
	switch {
	case a.IsUnspecified():
		v.add(field, s, "must be a unicast address, not the unspecified address")
		return
	case a == limitedBroadcast:
		v.add(field, s, "must be a unicast address, not the limited broadcast address")
		return
	case a.IsMulticast():
		v.add(field, s, "must be a unicast address, not a multicast one (224.0.0.0/4, ff00::/8)")
		return
	case a.IsLoopback():
		v.add(field, s, "must not be a loopback address (127.0.0.0/8, ::1): a neighbour is another router, reached over the network")
		return
	case a.Is4() && a.IsLinkLocalUnicast():
		v.add(field, s, "must not be an IPv4 link-local address (169.254.0.0/16): those are not routed, and podroute's pods use 169.254.1.1 as their gateway")
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
