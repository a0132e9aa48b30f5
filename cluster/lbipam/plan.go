package lbipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podroute/podroute/cluster"
)

// Decision is what one pass wants done to one Service this allocator
// serves.
type Decision struct {
	Service cluster.ServiceInfo
	// Addrs is the complete ingress list the Service should have, in the
	// order of its ipFamilies.
	Addrs []netip.Addr
	// Change: Addrs differs from the Service's status and must be written.
	Change bool
	// Allocated are the addresses in Addrs the Service did not have, with
	// the pool each came from.
	Allocated map[netip.Addr]string
	// Problems are why a family got no address (exhaustion, a requested
	// address that is taken or outside every pool, ...).
	Problems []Problem
	// Finalizer is what to do with cluster.LoadBalancerCleanupFinalizer:
	// add it to a served Service that lacks it (before its addresses are
	// written), remove it from a Service being deleted or no longer of
	// type LoadBalancer. A Decision may carry only this (Change false).
	Finalizer FinalizerAction
}

// FinalizerAction is a change to a Service's cleanup finalizer.
type FinalizerAction int

const (
	FinalizerKeep FinalizerAction = iota
	FinalizerAdd
	FinalizerRemove
)

// Problem is one Warning Event on a Service.
type Problem struct {
	Reason, Message string
}

// Plan decides every Service's LoadBalancer addresses from the API state
// alone (svcs: every Service, whoever serves it). It is a pure function;
// the controller runs it on every change and writes what it says.
//
// Addresses are claimed first from what statuses already hold, oldest
// Service first, so a restart (of the allocator, of podrouted, of every
// node) re-derives exactly the allocations that exist and a contested
// address stays with the Service that had it first. Addresses in any
// LoadBalancer Service's status count as taken, also those of Services
// another implementation serves, and so does any Service's external IP. Only then are missing families
// allocated: a requested address if it is free and in a pool the Service
// may use, else the first free address of the first pool with that family.
func Plan(cfg cluster.LoadBalancerConfig, svcs []cluster.ServiceInfo) []Decision {
	svcs = slices.Clone(svcs)
	slices.SortFunc(svcs, func(a, b cluster.ServiceInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Key(), b.Key())
	})
	owner := map[netip.Addr]string{}
	keep := map[string][]netip.Addr{} // served Service -> its valid current addresses
	for _, s := range svcs {
		// An external IP inside a pool is taken too: handing it out
		// would put one address on two Services.
		for _, a := range s.ExternalIPs {
			if _, in := poolOf(cfg, a); in && owner[a] == "" {
				owner[a] = s.Key()
			}
		}
		if s.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		// A Service being deleted is no longer served, but its addresses
		// stay taken (below) until it is gone.
		served := cfg.Serves(s) && !s.Deleting
		for _, a := range s.IngressIPs {
			if _, taken := owner[a]; taken {
				continue // someone older has it; if s is ours it gets another
			}
			pool, inPool := poolOf(cfg, a)
			if !served {
				if inPool {
					owner[a] = s.Key()
				}
				continue
			}
			if !inPool || !wantsFamily(s, a) || (s.Pool != "" && pool != s.Pool) || !matchesRequest(s, a) || has(keep[s.Key()], a.Is6()) {
				continue // dropped from the Service, free for others
			}
			owner[a] = s.Key()
			keep[s.Key()] = append(keep[s.Key()], a)
		}
	}
	// Within a pass addresses are only ever taken, never freed, so the
	// first free address of a prefix only moves forward: each prefix is
	// walked once per pass, however many Services are allocated.
	cursor := map[netip.Prefix]netip.Addr{}
	var out []Decision
	for _, s := range svcs {
		if !cfg.Serves(s) || s.Deleting {
			if s.HasCleanupFinalizer && releases(cfg, s) {
				out = append(out, Decision{Service: s, Addrs: s.IngressIPs, Finalizer: FinalizerRemove})
			}
			continue
		}
		d := Decision{Service: s, Allocated: map[netip.Addr]string{}}
		if !s.HasCleanupFinalizer {
			d.Finalizer = FinalizerAdd
		}
		families := s.IPFamilies
		if len(families) == 0 {
			families = []corev1.IPFamily{corev1.IPv4Protocol}
		}
		for _, r := range s.RequestedIPs {
			if !wantsFamily(s, r) {
				d.Problems = append(d.Problems, Problem{"RequestedFamilyNotServed",
					fmt.Sprintf("requested address %s is %s, which the Service does not have (ipFamilies %v); ignored", r, familyName(r.Is6()), families)})
			}
		}
		for _, fam := range families {
			v6 := fam == corev1.IPv6Protocol
			if a, ok := find(keep[s.Key()], v6); ok {
				d.Addrs = append(d.Addrs, a)
				continue
			}
			a, pool, problem := allocate(cfg, s, v6, owner, cursor)
			if problem != nil {
				d.Problems = append(d.Problems, *problem)
				continue
			}
			owner[a] = s.Key()
			d.Addrs = append(d.Addrs, a)
			d.Allocated[a] = pool
		}
		d.Change = !slices.Equal(d.Addrs, s.IngressIPs)
		out = append(out, d)
	}
	return out
}

// releases reports whether the allocator takes the cleanup finalizer off
// s, a Service it does not (or no longer) serve: one being deleted whose
// class it serves, or one no longer of type LoadBalancer (changing the
// type clears spec.loadBalancerClass, so the class says nothing then).
// A LoadBalancer Service of another class keeps its finalizer: its own
// implementation removes it.
func releases(cfg cluster.LoadBalancerConfig, s cluster.ServiceInfo) bool {
	if s.Type != corev1.ServiceTypeLoadBalancer {
		return true
	}
	if s.Class == "" {
		return cfg.AllocateClassless
	}
	return s.Class == cfg.Class
}

// allocate finds s an address of one family.
func allocate(cfg cluster.LoadBalancerConfig, s cluster.ServiceInfo, v6 bool, owner map[netip.Addr]string, cursor map[netip.Prefix]netip.Addr) (netip.Addr, string, *Problem) {
	fam := familyName(v6)
	pools := cfg.Pools
	if s.Pool != "" {
		pools = nil
		for _, p := range cfg.Pools {
			if p.Name == s.Pool {
				pools = []cluster.Pool{p}
			}
		}
		if pools == nil {
			return netip.Addr{}, "", &Problem{"UnknownPool", fmt.Sprintf("annotation %s names pool %q, which BGPConfiguration default does not have (pools: %s)",
				cluster.AnnotationAddressPool, s.Pool, poolNames(cfg.Pools))}
		}
	}
	if r, ok := find(s.RequestedIPs, v6); ok {
		pool, in := poolOf(cfg, r)
		switch {
		case !in || (s.Pool != "" && pool != s.Pool):
			return netip.Addr{}, "", &Problem{"AddressNotInPool", fmt.Sprintf("requested address %s is in no pool this Service may use (%s); no %s address allocated",
				r, describePools(pools, v6), fam)}
		case owner[r] != "":
			return netip.Addr{}, "", &Problem{"AddressInUse", fmt.Sprintf("requested address %s is already allocated to Service %s; no %s address allocated until it is free",
				r, owner[r], fam)}
		}
		return r, pool, nil
	}
	anyOfFamily := false
	for _, p := range pools {
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is6() != v6 {
				continue
			}
			anyOfFamily = true
			a, ok := cursor[pfx]
			if !ok {
				a = pfx.Addr()
			}
			for ; a.IsValid() && pfx.Contains(a); a = a.Next() {
				if owner[a] == "" {
					cursor[pfx] = a
					return a, p.Name, nil
				}
			}
			cursor[pfx] = a // past the end: full
		}
	}
	if !anyOfFamily {
		return netip.Addr{}, "", &Problem{"NoPoolForFamily", fmt.Sprintf("no pool this Service may use has %s addresses (%s); no %s address allocated", fam, describePools(pools, v6), fam)}
	}
	return netip.Addr{}, "", &Problem{"PoolExhausted", fmt.Sprintf("no free %s address: %s; the Service gets one as soon as one is freed", fam, describeUse(pools, v6, owner))}
}

func poolOf(cfg cluster.LoadBalancerConfig, a netip.Addr) (string, bool) {
	for _, p := range cfg.Pools {
		for _, pfx := range p.Prefixes {
			if pfx.Contains(a) {
				return p.Name, true
			}
		}
	}
	return "", false
}

func wantsFamily(s cluster.ServiceInfo, a netip.Addr) bool {
	if len(s.IPFamilies) == 0 {
		return a.Is4()
	}
	want := corev1.IPv4Protocol
	if a.Is6() {
		want = corev1.IPv6Protocol
	}
	return slices.Contains(s.IPFamilies, want)
}

// matchesRequest: an address the Service did not ask for, in a family it
// asked a specific address for, is replaced by the one it asked for.
func matchesRequest(s cluster.ServiceInfo, a netip.Addr) bool {
	r, ok := find(s.RequestedIPs, a.Is6())
	return !ok || r == a
}

func find(as []netip.Addr, v6 bool) (netip.Addr, bool) {
	for _, a := range as {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func has(as []netip.Addr, v6 bool) bool { _, ok := find(as, v6); return ok }

func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func poolNames(pools []cluster.Pool) string {
	var names []string
	for _, p := range pools {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func describePools(pools []cluster.Pool, v6 bool) string {
	var parts []string
	for _, p := range pools {
		var cidrs []string
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is6() == v6 {
				cidrs = append(cidrs, pfx.String())
			}
		}
		parts = append(parts, fmt.Sprintf("pool %s %s", p.Name, orNone(cidrs)))
	}
	if len(parts) == 0 {
		return "no pools"
	}
	return strings.Join(parts, ", ")
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "(none of that family)"
	}
	return strings.Join(ss, " ")
}

// describeUse names each pool with its size and how much of it is taken,
// e.g. "pool lab 198.51.100.0/30 (4 of 4 in use)".
func describeUse(pools []cluster.Pool, v6 bool, owner map[netip.Addr]string) string {
	var parts []string
	for _, p := range pools {
		var cidrs []string
		size, used := new(big.Int), 0
		for _, pfx := range p.Prefixes {
			if pfx.Addr().Is6() != v6 {
				continue
			}
			cidrs = append(cidrs, pfx.String())
			size.Add(size, new(big.Int).Lsh(big.NewInt(1), uint(pfx.Addr().BitLen()-pfx.Bits())))
			for a := range owner {
				if pfx.Contains(a) {
					used++
				}
			}
		}
		if len(cidrs) > 0 {
			parts = append(parts, fmt.Sprintf("pool %s %s (%d of %s in use)", p.Name, strings.Join(cidrs, " "), used, size))
		}
	}
	return strings.Join(parts, ", ")
}
