package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v4/api"
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func mustAddrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// evalPolicy runs a prefix received from an eBGP peer through a built
// policy the way GoBGP does: the first statement whose conditions all
// match decides; a statement without action falls through; no decision
// means the assignment's default, which the speaker sets to reject. It
// lets the decision table below be checked without a BGP session, and
// independently of how the sets are spelled. Conditions it does not model
// fail the test rather than being ignored.
func evalPolicy(t *testing.T, req *api.SetPoliciesRequest, policy string, p netip.Prefix) (accept bool, by string) {
	t.Helper()
	sets := map[string]*api.DefinedSet{}
	for _, ds := range req.DefinedSets {
		sets[ds.Name] = ds
	}
	for _, pol := range req.Policies {
		if pol.Name != policy {
			continue
		}
		for _, st := range pol.Statements {
			if c := st.Conditions; c != nil {
				if c.NeighborSet != nil || c.AsPathSet != nil || c.CommunitySet != nil || len(c.NextHopInList) > 0 || len(c.AfiSafiIn) > 0 {
					t.Fatalf("statement %s has a condition evalPolicy does not model: %v", st.Name, c)
				}
				// The candidate is a route from an eBGP peer.
				if c.RouteType != api.Conditions_ROUTE_TYPE_UNSPECIFIED && c.RouteType != api.Conditions_ROUTE_TYPE_EXTERNAL {
					continue
				}
				if c.PrefixSet != nil {
					ds := sets[c.PrefixSet.Name]
					if ds == nil {
						t.Fatalf("statement %s refers to missing set %q", st.Name, c.PrefixSet.Name)
					}
					if !setMatches(t, ds, p) {
						continue
					}
				}
			}
			if st.Actions == nil || st.Actions.RouteAction == api.RouteAction_ROUTE_ACTION_UNSPECIFIED {
				continue
			}
			return st.Actions.RouteAction == api.RouteAction_ROUTE_ACTION_ACCEPT, st.Name
		}
		return false, "default"
	}
	t.Fatalf("no policy %q", policy)
	return false, ""
}

// setMatches is GoBGP's prefix-set match: the candidate lies inside the
// entry's prefix and its length is within the entry's mask length range.
func setMatches(t *testing.T, ds *api.DefinedSet, p netip.Prefix) bool {
	t.Helper()
	for _, e := range ds.Prefixes {
		ep := netip.MustParsePrefix(e.IpPrefix)
		if ep.Addr().Is4() != p.Addr().Is4() {
			continue
		}
		if p.Bits() >= ep.Bits() && ep.Contains(p.Addr()) &&
			uint32(p.Bits()) >= e.MaskLengthMin && uint32(p.Bits()) <= e.MaskLengthMax {
			return true
		}
	}
	return false
}

func TestImportDecisions(t *testing.T) {
	base := policyInputs{
		policy: Policy{
			PodPools:       mustPrefixes("10.244.0.0/16", "fd00:244::/48"),
			ProtectedAddrs: mustAddrs("10.244.9.9", "fd00:244:0:9::9"),
		},
		own:       mustPrefixes("10.244.1.0/24", "fd00:244:0:1::/64"),
		protected: mustAddrs("10.244.9.9", "127.0.0.2", "fd00:244:0:9::9"),
	}
	withDefault := base
	withDefault.policy.ImportDefaultRoute = true

	cases := []struct {
		prefix     string
		want       bool
		wantWithDR bool
		why        string
	}{
		{"10.244.2.0/24", true, true, "another node's pod CIDR"},
		{"10.244.3.0/24", true, true, "another node's pod CIDR"},
		{"10.244.200.7/32", true, true, "a single pod address elsewhere in the pool"},
		{"10.244.1.0/24", false, false, "our own pod CIDR"},
		{"10.244.1.128/25", false, false, "inside our own pod CIDR"},
		{"10.244.1.5/32", false, false, "one of our pods"},
		{"10.244.0.0/23", false, false, "covers our own pod CIDR"},
		{"10.244.0.0/16", false, false, "the pool itself covers our pod CIDR"},
		{"10.244.9.0/24", false, false, "covers a protected node address"},
		{"10.244.9.9/32", false, false, "is a protected node address"},
		{"10.244.8.0/23", false, false, "covers a protected node address"},
		{"127.0.0.2/32", false, false, "the peer's address"},
		{"192.168.77.0/24", false, false, "outside every pool"},
		{"10.0.0.0/8", false, false, "covers the pool"},
		{"0.0.0.0/0", false, true, "default route"},
		{"fd00:244:0:2::/64", true, true, "another node's v6 pod CIDR"},
		{"fd00:244:1::/64", false, false, "outside the v6 pool (next /48)"},
		{"fd00:244:0:1::/64", false, false, "our own v6 pod CIDR"},
		{"fd00:244:0:1::/80", false, false, "inside our own v6 pod CIDR"},
		{"fd00:244::/48", false, false, "v6 pool covers our own"},
		{"fd00:244:0:9::/64", false, false, "covers a protected v6 address"},
		{"2001:db8::/32", false, false, "outside the v6 pool"},
		{"::/0", false, true, "v6 default route"},
	}
	req, reqDR := buildPolicies(base), buildPolicies(withDefault)
	for _, tc := range cases {
		p := netip.MustParsePrefix(tc.prefix)
		if got, by := evalPolicy(t, req, importPolicyName, p); got != tc.want {
			t.Errorf("import %s (%s): accept=%v by %s, want %v", p, tc.why, got, by, tc.want)
		}
		if got, by := evalPolicy(t, reqDR, importPolicyName, p); got != tc.wantWithDR {
			t.Errorf("ImportDefaultRoute: import %s (%s): accept=%v by %s, want %v", p, tc.why, got, by, tc.wantWithDR)
		}
	}
}

func TestBuildPoliciesSetsAreSingleFamily(t *testing.T) {
	in := policyInputs{
		policy: Policy{
			PodPools:           mustPrefixes("10.244.0.0/16", "fd00:244::/48"),
			ImportDefaultRoute: true,
		},
		own:       mustPrefixes("10.244.1.0/24", "fd00:244:0:1::/64"),
		protected: mustAddrs("192.0.2.1", "2001:db8::1"),
	}
	req := buildPolicies(in)
	fams := map[string]int{}
	for _, ds := range req.DefinedSets {
		if ds.DefinedType != api.DefinedType_DEFINED_TYPE_PREFIX {
			t.Errorf("set %s has type %v, want PREFIX", ds.Name, ds.DefinedType)
		}
		if len(ds.Prefixes) == 0 {
			t.Errorf("set %s is empty (GoBGP rejects empty sets)", ds.Name)
			continue
		}
		is4 := netip.MustParsePrefix(ds.Prefixes[0].IpPrefix).Addr().Is4()
		for _, e := range ds.Prefixes {
			ep := netip.MustParsePrefix(e.IpPrefix)
			if ep.Addr().Is4() != is4 {
				t.Errorf("set %s mixes families: %s next to %s", ds.Name, ep, ds.Prefixes[0].IpPrefix)
			}
			max := uint32(ep.Addr().BitLen())
			if e.MaskLengthMin < uint32(ep.Bits()) || e.MaskLengthMin > e.MaskLengthMax || e.MaskLengthMax > max {
				t.Errorf("set %s entry %s has mask range %d..%d", ds.Name, ep, e.MaskLengthMin, e.MaskLengthMax)
			}
			if ep != ep.Masked() {
				t.Errorf("set %s entry %s has host bits set", ds.Name, ep)
			}
		}
		if is4 {
			fams["v4"]++
		} else {
			fams["v6"]++
		}
	}
	// Default, own-overlap, protected, pools and own-export, per family.
	if fams["v4"] != 5 || fams["v6"] != 5 {
		t.Errorf("sets per family = %v, want 5 v4 and 5 v6", fams)
	}
	names := map[string]bool{}
	for _, ds := range req.DefinedSets {
		if names[ds.Name] {
			t.Errorf("set name %s used twice", ds.Name)
		}
		names[ds.Name] = true
	}
}

func statementNames(req *api.SetPoliciesRequest, policy string) []string {
	for _, p := range req.Policies {
		if p.Name == policy {
			var out []string
			for _, s := range p.Statements {
				out = append(out, s.Name)
			}
			return out
		}
	}
	return nil
}

func TestBuildPoliciesStatementOrder(t *testing.T) {
	in := policyInputs{
		policy:    Policy{PodPools: mustPrefixes("10.244.0.0/16", "fd00:244::/48"), ImportDefaultRoute: true},
		own:       mustPrefixes("10.244.1.0/24", "fd00:244:0:1::/64"),
		protected: mustAddrs("192.0.2.1", "2001:db8::1"),
	}
	got := statementNames(buildPolicies(in), importPolicyName)
	// Within each family: default accept first, then the two rejects,
	// then the pool accept. Across families order does not matter (a
	// prefix only ever matches sets of its own family).
	for _, f := range []string{"v4", "v6"} {
		want := []string{"accept-default-" + f, "reject-own-" + f, "reject-protected-" + f, "accept-pools-" + f}
		var sub []string
		for _, n := range got {
			if strings.HasSuffix(n, "-"+f) {
				sub = append(sub, n)
			}
		}
		if !slices.Equal(sub, want) {
			t.Errorf("%s import statements = %v, want %v (all: %v)", f, sub, want, got)
		}
	}
	// The actions must match the names: a statement called reject that
	// accepts would pass a name-only check.
	req := buildPolicies(in)
	for _, p := range req.Policies {
		for _, s := range p.Statements {
			if s.Actions == nil {
				continue
			}
			wantAccept := strings.HasPrefix(s.Name, "accept") || strings.HasPrefix(s.Name, "export") || s.Name == "transit"
			if (s.Actions.RouteAction == api.RouteAction_ROUTE_ACTION_ACCEPT) != wantAccept {
				t.Errorf("%s/%s: action %v", p.Name, s.Name, s.Actions.RouteAction)
			}
		}
	}

	in.policy.ImportDefaultRoute = false
	got = statementNames(buildPolicies(in), importPolicyName)
	for _, n := range got {
		if strings.Contains(n, "default") {
			t.Errorf("ImportDefaultRoute off: statement %s present", n)
		}
	}
	for _, n := range got {
		if strings.HasSuffix(n, "-v4") {
			if n != "reject-own-v4" {
				t.Errorf("without default route the own-overlap reject must come first, got %v", got)
			}
			break
		}
	}
}

func TestBuildPoliciesExport(t *testing.T) {
	in := policyInputs{
		policy:    Policy{PodPools: mustPrefixes("10.244.0.0/16", "fd00:244::/48")},
		own:       mustPrefixes("10.244.1.0/24", "fd00:244:0:1::/64"),
		protected: mustAddrs("192.0.2.1"),
	}
	for _, transit := range []bool{false, true} {
		t.Run(fmt.Sprintf("transit=%v", transit), func(t *testing.T) {
			in.policy.Transit = transit
			req := buildPolicies(in)
			for _, tc := range []struct {
				prefix string
				own    bool
			}{
				{"10.244.1.0/24", true},
				{"fd00:244:0:1::/64", true},
				{"10.244.1.0/25", false}, // more specific than ours: not ours
				{"10.244.0.0/16", false},
				{"10.244.2.0/24", false}, // learned from another node
				{"fd00:244:0:2::/64", false},
				{"0.0.0.0/0", false},
			} {
				got, by := evalPolicy(t, req, exportPolicyName, netip.MustParsePrefix(tc.prefix))
				if want := tc.own || transit; got != want {
					t.Errorf("export %s: accept=%v by %s, want %v", tc.prefix, got, by, want)
				}
			}
		})
	}

	// Nothing originated and no transit: export must still be a valid
	// (non-empty) policy that sends nothing.
	req := buildPolicies(policyInputs{policy: Policy{PodPools: mustPrefixes("10.244.0.0/16")}})
	if len(statementNames(req, exportPolicyName)) == 0 {
		t.Error("export policy has no statements; GoBGP refuses that")
	}
	if got, by := evalPolicy(t, req, exportPolicyName, netip.MustParsePrefix("10.244.2.0/24")); got {
		t.Errorf("nothing originated: exported 10.244.2.0/24 by %s", by)
	}
}

func TestBuildPoliciesIPv4OnlyHasNoV6Sets(t *testing.T) {
	in := policyInputs{
		policy:    Policy{PodPools: mustPrefixes("10.244.0.0/16"), ProtectedAddrs: mustAddrs("10.0.0.5")},
		own:       mustPrefixes("10.244.1.0/24"),
		protected: mustAddrs("10.0.0.5", "10.0.0.1"),
	}
	req := buildPolicies(in)
	for _, ds := range req.DefinedSets {
		if strings.HasSuffix(ds.Name, "-v6") {
			t.Errorf("IPv4-only node has v6 set %s", ds.Name)
		}
		for _, e := range ds.Prefixes {
			if netip.MustParsePrefix(e.IpPrefix).Addr().Is6() {
				t.Errorf("IPv4-only node has v6 entry %s in %s", e.IpPrefix, ds.Name)
			}
		}
	}
	for _, p := range req.Policies {
		for _, s := range p.Statements {
			if strings.HasSuffix(s.Name, "-v6") {
				t.Errorf("IPv4-only node has v6 statement %s/%s", p.Name, s.Name)
			}
		}
	}
	// With ImportDefaultRoute an IPv4-only node still gets a v6 default
	// accept: harmless (no v6 session exists to send one), but worth
	// knowing; the test pins only that the v4 one is there.
	in.policy.ImportDefaultRoute = true
	if got, _ := evalPolicy(t, buildPolicies(in), importPolicyName, netip.MustParsePrefix("0.0.0.0/0")); !got {
		t.Error("IPv4-only node with ImportDefaultRoute rejects 0.0.0.0/0")
	}
}

func TestBuildPoliciesEmptyInputsAreValid(t *testing.T) {
	req := buildPolicies(policyInputs{})
	if len(req.DefinedSets) != 0 {
		t.Errorf("no inputs: %d sets, want none", len(req.DefinedSets))
	}
	for _, name := range []string{importPolicyName, exportPolicyName} {
		if len(statementNames(req, name)) == 0 {
			t.Errorf("%s has no statements; GoBGP refuses that", name)
		}
		if got, by := evalPolicy(t, req, name, netip.MustParsePrefix("10.244.2.0/24")); got {
			t.Errorf("%s with no inputs accepts by %s", name, by)
		}
	}
}

func TestSupernets(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		maxBits int
	}{
		{"10.244.9.9", 32},
		{"10.244.1.0", 23},
		{"255.255.255.255", 32},
		{"0.0.0.0", 0},
		{"fd00:244:0:1::", 63},
		{"2001:db8::1", 128},
	} {
		a := netip.MustParseAddr(tc.addr)
		got := supernets(a, tc.maxBits)
		if len(got) != tc.maxBits+1 {
			t.Errorf("supernets(%s, %d): %d prefixes, want %d", a, tc.maxBits, len(got), tc.maxBits+1)
			continue
		}
		for l, p := range got {
			if p.Bits() != l || !p.Contains(a) || p != p.Masked() {
				t.Errorf("supernets(%s, %d)[%d] = %s, want the /%d containing %s", a, tc.maxBits, l, p, l, a)
			}
		}
	}
	// Spot values, computed by hand.
	got := supernets(netip.MustParseAddr("10.244.9.9"), 32)
	for _, s := range []string{"0.0.0.0/0", "8.0.0.0/5", "10.244.0.0/16", "10.244.8.0/23", "10.244.9.0/24", "10.244.9.9/32"} {
		if !slices.Contains(got, netip.MustParsePrefix(s)) {
			t.Errorf("supernets(10.244.9.9, 32) lacks %s", s)
		}
	}
	if got := supernets(netip.MustParseAddr("10.0.0.0"), -1); len(got) != 0 {
		t.Errorf("supernets with maxBits -1 = %v, want none (an own /0 has no shorter supernet)", got)
	}
}

// The automatic part of the protected set: every peer address and every
// local session address, deduplicated and sorted, so that an unchanged
// peer set produces identical policy inputs (sameInputs) and no re-push.
func TestProtectedIncludesSessionAddresses(t *testing.T) {
	s, err := New(Config{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	s.policy = Policy{ProtectedAddrs: mustAddrs("10.0.0.9", "192.0.2.1")}
	s.peers = peerMap(
		Peer{Address: netip.MustParseAddr("192.0.2.2"), LocalAddress: netip.MustParseAddr("192.0.2.1")},
		Peer{Address: netip.MustParseAddr("2001:db8::2"), LocalAddress: netip.MustParseAddr("2001:db8::1")},
		Peer{Address: netip.MustParseAddr("192.0.2.3")},
	)
	got := s.protectedLocked()
	want := mustAddrs("10.0.0.9", "192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "2001:db8::2")
	if !slices.Equal(got, want) {
		t.Errorf("protected = %v, want %v", got, want)
	}
}

// GoBGP requires statement names to be unique across all policies, and
// when SetPolicies fails to load it calls its logger's Fatal, which ends
// the process. So every input must produce unique names, including the
// empty one a speaker starts with.
func TestBuildPoliciesStatementNamesUnique(t *testing.T) {
	for name, in := range map[string]policyInputs{
		"empty":        {},
		"import only":  {policy: Policy{PodPools: mustPrefixes("10.244.0.0/16")}},
		"export only":  {own: mustPrefixes("10.244.1.0/24")},
		"transit only": {policy: Policy{Transit: true}},
		"everything": {
			policy:    Policy{PodPools: mustPrefixes("10.244.0.0/16", "fd00:244::/48"), ImportDefaultRoute: true, Transit: true},
			own:       mustPrefixes("10.244.1.0/24", "fd00:244:0:1::/64"),
			protected: mustAddrs("192.0.2.1", "2001:db8::1"),
		},
	} {
		seen := map[string]string{}
		for _, p := range buildPolicies(in).Policies {
			for _, s := range p.Statements {
				if other, dup := seen[s.Name]; dup {
					t.Errorf("%s: statement name %q is used in %s and %s", name, s.Name, other, p.Name)
				}
				seen[s.Name] = p.Name
			}
		}
	}
}
