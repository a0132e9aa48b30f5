package bgp

import (
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"
)

// Policy names are stable so that SetPolicies can swap their contents
// while the global assignments keep pointing at them.
const (
	importPolicyName = "podroute-import"
	exportPolicyName = "podroute-export"
)

// family tags a prefix set; GoBGP refuses sets that mix families.
type family struct {
	name string
	bits int
	is4  bool
}

var families = []family{{"v4", 32, true}, {"v6", 128, false}}

// policyInputs is everything the policies are computed from.
type policyInputs struct {
	policy    Policy
	own       []netip.Prefix // this node's originated pod CIDRs
	svc       []netip.Prefix // other advertised prefixes (Services)
	protected []netip.Addr   // node, peer and local session addresses
}

// buildPolicies turns the inputs into GoBGP defined sets and the import
// and export policies. Import, first match wins, default reject:
//
//  0. our own originated paths: accept
//  1. the default route, when ImportDefaultRoute is set: accept
//  2. a prefix equal to, inside, or covering one of our own pod CIDRs:
//     reject (nobody else may attract our pods' traffic)
//  3. a prefix covering a protected address: reject
//  4. a prefix inside a pod pool: accept
//
// Export: our own pod CIDRs and our advertisements (Services) only,
// unless Transit.
func buildPolicies(in policyInputs) *api.SetPoliciesRequest {
	req := &api.SetPoliciesRequest{}
	// GoBGP runs the import policy over locally originated paths too; our
	// own pod CIDRs must pass whatever the pools say.
	imp := []*api.Statement{{
		Name:       "accept-local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}
	var exp []*api.Statement

	addSet := func(name string, entries []*api.Prefix) bool {
		if len(entries) == 0 {
			return false
		}
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name, Prefixes: entries,
		})
		return true
	}
	stmt := func(name, set string, action api.RouteAction) *api.Statement {
		return &api.Statement{
			Name:       name,
			Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set}},
			Actions:    &api.Actions{RouteAction: action},
		}
	}

	for _, f := range families {
		own := filterFamily(in.own, f.is4)
		pools := filterFamily(in.policy.PodPools, f.is4)

		if in.policy.ImportDefaultRoute {
			name := "podroute-default-" + f.name
			def := netip.PrefixFrom(unspecified(f.is4), 0)
			if addSet(name, []*api.Prefix{exact(def)}) {
				imp = append(imp, stmt("accept-default-"+f.name, name, api.RouteAction_ROUTE_ACTION_ACCEPT))
			}
		}

		var ownOverlap []*api.Prefix
		seen := map[netip.Prefix]bool{}
		for _, c := range own {
			ownOverlap = append(ownOverlap, orLonger(c, f.bits))
			seen[c] = true
			for _, s := range supernets(c.Addr(), c.Bits()-1) {
				if !seen[s] {
					seen[s] = true
					ownOverlap = append(ownOverlap, exact(s))
				}
			}
		}
		if name := "podroute-own-overlap-" + f.name; addSet(name, ownOverlap) {
			imp = append(imp, stmt("reject-own-"+f.name, name, api.RouteAction_ROUTE_ACTION_REJECT))
		}

		var covering []*api.Prefix
		seen = map[netip.Prefix]bool{}
		for _, a := range in.protected {
			if a.Is4() != f.is4 {
				continue
			}
			for _, s := range supernets(a, f.bits) {
				if !seen[s] {
					seen[s] = true
					covering = append(covering, exact(s))
				}
			}
		}
		if name := "podroute-protected-" + f.name; addSet(name, covering) {
			imp = append(imp, stmt("reject-protected-"+f.name, name, api.RouteAction_ROUTE_ACTION_REJECT))
		}

		var poolEntries []*api.Prefix
		for _, p := range pools {
			poolEntries = append(poolEntries, orLonger(p, f.bits))
		}
		if name := "podroute-pools-" + f.name; addSet(name, poolEntries) {
			imp = append(imp, stmt("accept-pools-"+f.name, name, api.RouteAction_ROUTE_ACTION_ACCEPT))
		}

		var ownExact []*api.Prefix
		for _, c := range own {
			ownExact = append(ownExact, exact(c))
		}
		if name := "podroute-own-" + f.name; addSet(name, ownExact) {
			exp = append(exp, stmt("export-own-"+f.name, name, api.RouteAction_ROUTE_ACTION_ACCEPT))
		}
		var svcExact []*api.Prefix
		for _, c := range filterFamily(in.svc, f.is4) {
			svcExact = append(svcExact, exact(c))
		}
		if name := "podroute-advertised-" + f.name; addSet(name, svcExact) {
			exp = append(exp, stmt("export-advertised-"+f.name, name, api.RouteAction_ROUTE_ACTION_ACCEPT))
		}
	}
	if in.policy.Transit {
		exp = append(exp, &api.Statement{Name: "transit", Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT}})
	}
	// GoBGP rejects a policy without statements; a statement with no
	// condition and no action changes nothing and falls to the default.
	if len(exp) == 0 {
		exp = []*api.Statement{{Name: "export-none"}}
	}
	req.Policies = []*api.Policy{
		{Name: importPolicyName, Statements: imp},
		{Name: exportPolicyName, Statements: exp},
	}
	return req
}

func filterFamily(ps []netip.Prefix, is4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == is4 {
			out = append(out, p.Masked())
		}
	}
	return out
}

// supernets returns a/0 .. a/maxBits, every prefix that contains a at
// those lengths.
func supernets(a netip.Addr, maxBits int) []netip.Prefix {
	out := make([]netip.Prefix, 0, maxBits+1)
	for l := 0; l <= maxBits; l++ {
		p, _ := a.Prefix(l)
		out = append(out, p)
	}
	return out
}

func exact(p netip.Prefix) *api.Prefix {
	return &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())}
}

func orLonger(p netip.Prefix, maxBits int) *api.Prefix {
	return &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(maxBits)}
}

func unspecified(is4 bool) netip.Addr {
	if is4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// sameInputs reports whether applying b would change nothing after a.
func sameInputs(a, b policyInputs) bool {
	return sameInputsButSvc(a, b) && slices.Equal(a.svc, b.svc)
}

// sameInputsButSvc is sameInputs except for the advertised prefixes.
func sameInputsButSvc(a, b policyInputs) bool {
	return a.policy.ImportDefaultRoute == b.policy.ImportDefaultRoute &&
		a.policy.Transit == b.policy.Transit &&
		slices.Equal(a.policy.PodPools, b.policy.PodPools) &&
		slices.Equal(a.policy.ProtectedAddrs, b.policy.ProtectedAddrs) &&
		slices.Equal(a.own, b.own) &&
		slices.Equal(a.protected, b.protected)
}
