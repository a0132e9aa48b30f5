package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
)

// Usage is how full one pod CIDR is.
type Usage struct {
	CIDR     netip.Prefix
	InUse    int
	Capacity *big.Int
}

// Usages reports, for each of the store's current CIDRs, how many addresses
// are held and how many can be. reserved are extra reserved addresses, as
// given to the Store with WithReserved.
func (s *State) Usages(reserved []netip.Addr) []Usage {
	var out []Usage
	for _, p := range s.CIDRs {
		u := Usage{CIDR: p, Capacity: Capacity(p, reserved)}
		for _, a := range s.Allocations {
			for _, addr := range a.Addrs {
				if p.Contains(addr) {
					u.InUse++
				}
			}
		}
		out = append(out, u)
	}
	return out
}

// ProblemKind classifies what Audit found.
type ProblemKind string

// The kinds of problem Audit reports.
const (
	// Leaked: the pod's network namespace is gone, so nobody will DEL it.
	Leaked ProblemKind = "leaked"
	// Duplicate: two attachments hold one address.
	Duplicate ProblemKind = "duplicate"
	// OutsideCIDR: an address that is in none of the current pod CIDRs
	// (left from an earlier CIDR, or the CIDR changed under running pods).
	OutsideCIDR ProblemKind = "outside-cidr"
	// Reserved: an address that must never be handed out.
	Reserved ProblemKind = "reserved"
)

// Problem is one finding of Audit.
type Problem struct {
	Kind        ProblemKind `json:"kind"`
	Attachments []string    `json:"attachments"`
	Address     string      `json:"address,omitempty"`
	Detail      string      `json:"detail"`
}

// Audit checks the store for leaked allocations (the network namespace
// recorded at ADD no longer exists, as told by netnsExists) and conflicts
// (an address held twice, outside the current CIDRs, or reserved). The
// result is sorted for stable output.
func (s *State) Audit(netnsExists func(path string) bool) []Problem {
	var out []Problem
	holders := map[netip.Addr][]string{}
	for _, a := range s.Allocations {
		att := a.Attachment().String()
		if a.Netns != "" && netnsExists != nil && !netnsExists(a.Netns) {
			out = append(out, Problem{Kind: Leaked, Attachments: []string{att},
				Detail: fmt.Sprintf("network namespace %s no longer exists; addresses %s are held for a pod that is gone (CNI GC or DEL frees them)", a.Netns, joinAddrs(a.Addrs))})
		}
		for _, addr := range a.Addrs {
			holders[addr] = append(holders[addr], att)
			i := slices.IndexFunc(s.CIDRs, func(p netip.Prefix) bool { return p.Contains(addr) })
			switch {
			case i < 0:
				out = append(out, Problem{Kind: OutsideCIDR, Attachments: []string{att}, Address: addr.String(),
					Detail: fmt.Sprintf("%s is outside the current pod CIDRs %v", addr, s.CIDRs)})
			case isBuiltinReserved(s.CIDRs[i], addr):
				out = append(out, Problem{Kind: Reserved, Attachments: []string{att}, Address: addr.String(),
					Detail: fmt.Sprintf("%s is a reserved address of %s (network, broadcast or anycast)", addr, s.CIDRs[i])})
			}
		}
	}
	for addr, atts := range holders {
		if len(atts) > 1 {
			out = append(out, Problem{Kind: Duplicate, Attachments: atts, Address: addr.String(),
				Detail: fmt.Sprintf("%s is held by %d attachments: %s", addr, len(atts), strings.Join(atts, ", "))})
		}
	}
	slices.SortFunc(out, func(x, y Problem) int {
		if c := strings.Compare(string(x.Kind), string(y.Kind)); c != 0 {
			return c
		}
		if c := strings.Compare(x.Address, y.Address); c != 0 {
			return c
		}
		return slices.Compare(x.Attachments, y.Attachments)
	})
	return out
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
