package bird

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// RouterSpec describes one BIRD router for Config.
type RouterSpec struct {
	RouterID  string
	ASN       uint32 // the local AS of every BGP session
	Neighbors []Neighbor
	// Networks are originated: static blackhole routes (IPv4 or IPv6)
	// that every neighbour's export takes, as FRR's `network` does.
	Networks []string
	// ExportToKernel adds a kernel protocol per family that writes the
	// best routes into the namespace's main table (route protocol "bird",
	// 12): without it BIRD routes nothing. ECMP routes become multipath
	// kernel routes.
	ExportToKernel bool
	// Log is the classes BIRD logs to stderr, e.g. "{ info, warning,
	// error }"; empty means all.
	Log string
	// Debug logs each protocol's state changes and events (BIRD logs
	// errors only otherwise): useful when a session does not come up.
	Debug bool
	Extra string // raw lines appended at the end
}

// Neighbor is one BGP session of a RouterSpec: a BIRD `protocol bgp`
// with one channel, IPv4 for an IPv4 neighbour and IPv6 for an IPv6 one.
type Neighbor struct {
	// Name is the protocol's name in birdc's output; empty means
	// ProtocolName(Address).
	Name         string
	Address      string
	ASN          uint32
	LocalAddress string // source address of the session; empty: the kernel's choice
	Password     string // TCP MD5
	Passive      bool   // wait for the neighbour to connect
	Hold         int    // seconds; 0 keeps BIRD's 240
	Keepalive    int    // seconds; 0 means Hold/3
	Multihop     int    // eBGP multihop TTL; 0 means directly connected
	// GracefulRestart is `graceful restart on`: BIRD may restart
	// gracefully itself and keeps a restarting neighbour's routes (as a
	// helper it does that in its default "aware" mode too).
	GracefulRestart bool
	NextHopSelf     bool
	// Import and Export are the channel's filters ("all", "none" or a
	// filter expression such as "where net ~ [ 10.0.0.0/8+ ]"); empty
	// means "all".
	Import, Export string
}

// ProtocolName is the BGP protocol name Config gives a neighbour without
// a Name: "n_" and the address with every '.' and ':' as '_', e.g.
// n_172_31_1_2 and n_fd00_31_1__2.
func ProtocolName(address string) string {
	return "n_" + strings.NewReplacer(".", "_", ":", "_").Replace(address)
}

func (n Neighbor) protocolName() string {
	if n.Name != "" {
		return n.Name
	}
	return ProtocolName(n.Address)
}

var symbolRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Config renders a bird.conf: logging to stderr (Start sends it to the
// instance's log file), a device protocol, the kernel protocols when
// asked for, one static protocol per family for Networks and one BGP
// protocol per neighbour. It refuses what BIRD could not parse or would
// read differently: bad addresses and names, and passwords with a quote
// or a line break (BIRD's strings have no escapes).
func Config(r RouterSpec) (string, error) {
	var b strings.Builder
	var errs []error
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	if _, err := netip.ParseAddr(r.RouterID); err != nil || !strings.Contains(r.RouterID, ".") {
		errs = append(errs, fmt.Errorf("bird config: router ID %q: want an IPv4 address", r.RouterID))
	}
	line("log stderr %s;", orAll(r.Log))
	line("router id %s;", r.RouterID)
	if r.Debug {
		line("debug protocols { states, events };")
	}
	line("protocol device { }")
	if r.ExportToKernel {
		for _, fam := range []string{"ipv4", "ipv6"} {
			line("protocol kernel kernel%s {", fam[3:])
			line("\t%s { import none; export all; };", fam)
			line("\tmerge paths on;")
			line("}")
		}
	}
	statics := map[string][]string{}
	for _, p := range r.Networks {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("bird config: network %q: %w", p, err))
			continue
		}
		fam := family(prefix.Addr())
		statics[fam] = append(statics[fam], prefix.Masked().String())
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if len(statics[fam]) == 0 {
			continue
		}
		line("protocol static static%s {", fam[3:])
		line("\t%s;", fam)
		for _, p := range statics[fam] {
			line("\troute %s blackhole;", p)
		}
		line("}")
	}
	names := map[string]bool{}
	for _, n := range r.Neighbors {
		if err := n.render(line, r.ASN); err != nil {
			errs = append(errs, err)
		}
		if names[n.protocolName()] {
			errs = append(errs, fmt.Errorf("bird config: two neighbours named %q", n.protocolName()))
		}
		names[n.protocolName()] = true
	}
	if r.Extra != "" {
		line("%s", strings.TrimRight(r.Extra, "\n"))
	}
	return b.String(), errors.Join(errs...)
}

func (n Neighbor) render(line func(string, ...any), asn uint32) error {
	addr, err := netip.ParseAddr(n.Address)
	if err != nil || addr.Zone() != "" {
		return fmt.Errorf("bird config: neighbour address %q: want an IP address without a zone", n.Address)
	}
	name := n.protocolName()
	if !symbolRE.MatchString(name) {
		return fmt.Errorf("bird config: protocol name %q: want letters, digits and '_', not starting with a digit", name)
	}
	if strings.ContainsAny(n.Password, "\"\n\r") {
		return fmt.Errorf("bird config: neighbour %s: a password with a '\"' or a line break cannot be written in bird.conf", n.Address)
	}
	local := ""
	if n.LocalAddress != "" {
		la, err := netip.ParseAddr(n.LocalAddress)
		if err != nil || la.Is4() != addr.Is4() {
			return fmt.Errorf("bird config: neighbour %s: local address %q: want an address of the same family", n.Address, n.LocalAddress)
		}
		local = la.String() + " "
	}
	line("protocol bgp %s {", name)
	line("\tlocal %sas %d;", local, asn)
	line("\tneighbor %s as %d;", addr, n.ASN)
	if n.Passive {
		line("\tpassive on;")
	}
	if n.Password != "" {
		line("\tpassword \"%s\";", n.Password)
	}
	if keepalive, hold := n.timers(); hold > 0 {
		line("\thold time %d;", hold)
		line("\tkeepalive time %d;", keepalive)
	}
	if n.Multihop > 0 {
		line("\tmultihop %d;", n.Multihop)
	}
	if n.GracefulRestart {
		line("\tgraceful restart on;")
	}
	line("\t%s {", family(addr))
	line("\t\timport %s;", orAll(n.Import))
	line("\t\texport %s;", orAll(n.Export))
	if n.NextHopSelf {
		line("\t\tnext hop self;")
	}
	line("\t};")
	line("}")
	return nil
}

func orAll(filter string) string {
	if filter == "" {
		return "all"
	}
	return filter
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// timers returns keepalive and hold time, filling in whichever is missing
// with the usual 1:3 ratio; hold 0 means "keep BIRD's defaults".
func (n Neighbor) timers() (keepalive, hold int) {
	keepalive, hold = n.Keepalive, n.Hold
	switch {
	case hold == 0 && keepalive == 0:
		return 0, 0
	case hold == 0:
		hold = 3 * keepalive
	case keepalive == 0:
		keepalive = max(hold/3, 1)
	}
	return keepalive, hold
}
