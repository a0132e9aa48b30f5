package routes

import (
	"fmt"
	"strings"
)

// ProtocolRange is a run of kernel route protocol numbers (rtm_protocol)
// that other software writes.
type ProtocolRange struct {
	Lo, Hi uint8
	// Owner names the software that owns the whole run when one program
	// does ("FRR"); empty when each number has its own owner.
	Owner string
	// Names has one entry per number, Lo..Hi, as iproute2's rt_protos and
	// FRR's rt_netlink.h call them.
	Names []string
}

// ReservedProtocols are the route protocol numbers that the kernel, FRR,
// BIRD and other routing daemons write, in ascending order. podroute
// deletes routes that carry its own number, so owning one of these would
// mean deleting another daemon's routes. This is the one list: the config
// file's validation and the reconciler both check against it.
var ReservedProtocols = []ProtocolRange{
	{Lo: 0, Hi: 4, Owner: "the kernel", Names: []string{"unspec", "redirect", "kernel", "boot", "static"}},
	{Lo: 8, Hi: 16, Names: []string{"gated", "ra", "mrt", "zebra", "bird", "dnrouted", "xorp", "ntk", "dhcp"}},
	{Lo: 17, Hi: 18, Names: []string{"mrouted", "keepalived"}},
	{Lo: 42, Hi: 42, Names: []string{"babel"}},
	{Lo: 99, Hi: 99, Names: []string{"openr"}},
	{Lo: 186, Hi: 198, Owner: "FRR", Names: []string{"bgp", "isis", "ospf", "rip", "ripng", "nhrp", "eigrp", "ldp", "sharp", "pbr", "static", "openfabric", "srte"}},
}

// Contains reports whether p is in the range.
func (r ProtocolRange) Contains(p uint8) bool { return p >= r.Lo && p <= r.Hi }

// Owners describes who owns the range, e.g. "FRR (bgp, isis, ...)" or
// "mrouted, keepalived".
func (r ProtocolRange) Owners() string {
	names := strings.Join(r.Names, ", ")
	if r.Owner == "" {
		return names
	}
	return r.Owner + " (" + names + ")"
}

// nameOf is the owner of one number of the range, e.g. "bgp (FRR)".
func (r ProtocolRange) nameOf(p uint8) string {
	name := r.Names[p-r.Lo]
	if r.Owner != "" {
		name += " (" + r.Owner + ")"
	}
	return name
}

// ReservedProtocol returns the range holding p, if p is reserved.
func ReservedProtocol(p uint8) (ProtocolRange, bool) {
	for _, r := range ReservedProtocols {
		if r.Contains(p) {
			return r, true
		}
	}
	return ProtocolRange{}, false
}

// CheckProtocol refuses a route protocol number that other software owns.
func CheckProtocol(p uint8) error {
	if r, ok := ReservedProtocol(p); ok {
		return fmt.Errorf("route protocol %d is reserved for %s; pick a number no other routing software uses (podroute's default is 201)", p, r.nameOf(p))
	}
	return nil
}
