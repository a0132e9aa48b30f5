package routes

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// These tests need no privileges: decide, normalize and validate are pure.

// write is one route the diff puts into the kernel.
type write struct {
	route   Route
	replace bool
}

// plan runs the reconciler's diff (decide over entries whose next hops
// are interned in a hopTable, as the reconciler keeps them) on a desired
// and a kernel table, keep marking routes adopted from a previous run.
func plan(desired, kernel map[netip.Prefix]Route, keep func(netip.Prefix) bool) (writes []write, deletes []Route) {
	hops := newHopTable()
	id := func(rt Route) hopsID {
		if rt.Blackhole {
			return blackholeHops
		}
		return hops.id(rt.normalize().NextHops)
	}
	entries := map[netip.Prefix]entry{}
	for p, rt := range desired {
		e := entries[p]
		e.want = id(rt)
		entries[p] = e
	}
	for p, rt := range kernel {
		e := entries[p]
		e.have = id(rt)
		if keep != nil && keep(p) {
			e.flags |= flagStale
		}
		entries[p] = e
	}
	for p, e := range entries {
		switch decide(e) {
		case actCreate:
			writes = append(writes, write{route: desired[p].normalize()})
		case actReplace:
			writes = append(writes, write{route: desired[p].normalize(), replace: true})
		case actDelete:
			deletes = append(deletes, kernel[p])
		}
	}
	slices.SortFunc(writes, func(a, b write) int { return comparePrefix(a.route.Prefix, b.route.Prefix) })
	slices.SortFunc(deletes, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return writes, deletes
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func via(prefix string, hops ...string) Route {
	return Route{Prefix: pfx(prefix), NextHops: addrs(hops...)}
}

func blackhole(prefix string) Route { return Route{Prefix: pfx(prefix), Blackhole: true} }

// routeMap builds a desired or kernel table the way the reconciler keeps
// them: normalized and keyed by prefix.
func routeMap(rs ...Route) map[netip.Prefix]Route {
	m := make(map[netip.Prefix]Route, len(rs))
	for _, r := range rs {
		r = r.normalize()
		m[r.Prefix] = r
	}
	return m
}

func TestPlan(t *testing.T) {
	type wantWrite struct {
		prefix  string
		replace bool
	}
	tests := []struct {
		name        string
		desired     []Route
		kernel      []Route
		keep        []string
		wantWrites  []wantWrite
		wantDeletes []string
	}{
		{
			name:       "new prefix is created exclusively",
			desired:    []Route{via("10.1.0.0/24", "10.0.0.2")},
			wantWrites: []wantWrite{{"10.1.0.0/24", false}},
		},
		{
			name:       "new IPv6 ECMP prefix is created exclusively",
			desired:    []Route{via("2001:db8:1::/64", "2001:db8::2", "2001:db8::3")},
			wantWrites: []wantWrite{{"2001:db8:1::/64", false}},
		},
		{
			name:       "changed next hop replaces",
			desired:    []Route{via("10.1.0.0/24", "10.0.0.3")},
			kernel:     []Route{via("10.1.0.0/24", "10.0.0.2")},
			wantWrites: []wantWrite{{"10.1.0.0/24", true}},
		},
		{
			name:       "single hop grown to ECMP replaces",
			desired:    []Route{via("10.1.0.0/24", "10.0.0.2", "10.0.1.2")},
			kernel:     []Route{via("10.1.0.0/24", "10.0.0.2")},
			wantWrites: []wantWrite{{"10.1.0.0/24", true}},
		},
		{
			name:    "same next hops in another order and with duplicates is nothing to do",
			desired: []Route{via("10.1.0.0/24", "10.0.1.2", "10.0.0.2", "10.0.1.2")},
			kernel:  []Route{via("10.1.0.0/24", "10.0.0.2", "10.0.1.2")},
		},
		{
			name:    "equal blackhole is nothing to do",
			desired: []Route{blackhole("10.9.0.0/24")},
			kernel:  []Route{blackhole("10.9.0.0/24")},
		},
		{
			name:        "not desired is deleted",
			kernel:      []Route{via("10.1.0.0/24", "10.0.0.2"), blackhole("2001:db8:9::/64")},
			wantDeletes: []string{"10.1.0.0/24", "2001:db8:9::/64"},
		},
		{
			name:        "not desired but kept (adopted, not yet re-learned) stays",
			kernel:      []Route{via("10.1.0.0/24", "10.0.0.2"), via("10.2.0.0/24", "10.0.0.2")},
			keep:        []string{"10.1.0.0/24"},
			wantDeletes: []string{"10.2.0.0/24"},
		},
		{
			name:       "keep does not stop a desired change",
			desired:    []Route{via("10.1.0.0/24", "10.0.0.3")},
			kernel:     []Route{via("10.1.0.0/24", "10.0.0.2")},
			keep:       []string{"10.1.0.0/24"},
			wantWrites: []wantWrite{{"10.1.0.0/24", true}},
		},
		{
			name:       "unicast to blackhole replaces",
			desired:    []Route{blackhole("10.1.0.0/24")},
			kernel:     []Route{via("10.1.0.0/24", "10.0.0.2")},
			wantWrites: []wantWrite{{"10.1.0.0/24", true}},
		},
		{
			name:       "blackhole to unicast replaces",
			desired:    []Route{via("2001:db8:1::/64", "2001:db8::2")},
			kernel:     []Route{blackhole("2001:db8:1::/64")},
			wantWrites: []wantWrite{{"2001:db8:1::/64", true}},
		},
		{
			name:       "same address, other length is another route",
			desired:    []Route{via("10.1.0.0/16", "10.0.0.2")},
			kernel:     []Route{via("10.1.0.0/24", "10.0.0.2")},
			wantWrites: []wantWrite{{"10.1.0.0/16", false}},
			// The /24 is not desired, so it goes.
			wantDeletes: []string{"10.1.0.0/24"},
		},
		{
			name: "mixed batch comes out sorted by prefix",
			desired: []Route{
				via("10.3.0.0/24", "10.0.0.2"),
				via("10.1.0.0/24", "10.0.0.2"),
				via("10.2.0.0/24", "10.0.0.3"),
				via("10.1.0.0/16", "10.0.0.2"),
			},
			kernel: []Route{
				via("10.2.0.0/24", "10.0.0.2"),
				via("10.8.0.0/24", "10.0.0.2"),
				via("10.7.0.0/24", "10.0.0.2"),
			},
			wantWrites: []wantWrite{
				{"10.1.0.0/16", false}, {"10.1.0.0/24", false}, {"10.2.0.0/24", true}, {"10.3.0.0/24", false},
			},
			wantDeletes: []string{"10.7.0.0/24", "10.8.0.0/24"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			desired, kernel := routeMap(tc.desired...), routeMap(tc.kernel...)
			var keep func(netip.Prefix) bool
			if tc.keep != nil {
				keep = func(p netip.Prefix) bool { return slices.Contains(tc.keep, p.String()) }
			}
			writes, deletes := plan(desired, kernel, keep)

			var gotWrites []wantWrite
			for _, w := range writes {
				gotWrites = append(gotWrites, wantWrite{w.route.Prefix.String(), w.replace})
				// What is written must be exactly the desired route,
				// not the kernel's old one.
				if !w.route.Equal(desired[w.route.Prefix]) {
					t.Errorf("write %v, desired %v", w.route, desired[w.route.Prefix])
				}
			}
			if !slices.Equal(gotWrites, tc.wantWrites) {
				t.Errorf("writes = %v, want %v", gotWrites, tc.wantWrites)
			}
			var gotDeletes []string
			for _, d := range deletes {
				gotDeletes = append(gotDeletes, d.Prefix.String())
				// A delete carries the route the kernel holds, not a
				// desired one (there is none).
				if !d.Equal(kernel[d.Prefix]) {
					t.Errorf("delete %v, kernel holds %v", d, kernel[d.Prefix])
				}
			}
			if !slices.Equal(gotDeletes, tc.wantDeletes) {
				t.Errorf("deletes = %v, want %v", gotDeletes, tc.wantDeletes)
			}

			// Applying the plan must converge: a second plan against the
			// result is empty. This is what makes the reconciler safe to
			// run again at any time.
			after := maps(kernel)
			for _, w := range writes {
				after[w.route.Prefix] = w.route
			}
			for _, d := range deletes {
				delete(after, d.Prefix)
			}
			w2, d2 := plan(desired, after, keep)
			if len(w2) != 0 || len(d2) != 0 {
				t.Errorf("plan not idempotent: second round writes %v deletes %v", w2, d2)
			}
		})
	}
}

func maps(m map[netip.Prefix]Route) map[netip.Prefix]Route {
	out := make(map[netip.Prefix]Route, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestNormalize(t *testing.T) {
	r := Route{Prefix: pfx("10.1.2.3/16"), NextHops: addrs("10.0.1.2", "10.0.0.2", "10.0.1.2", "10.0.0.2")}
	n := r.normalize()
	if want := pfx("10.1.0.0/16"); n.Prefix != want {
		t.Errorf("prefix = %v, want masked %v", n.Prefix, want)
	}
	if want := addrs("10.0.0.2", "10.0.1.2"); !slices.Equal(n.NextHops, want) {
		t.Errorf("next hops = %v, want sorted and de-duplicated %v", n.NextHops, want)
	}
	// normalize must not reorder the caller's slice behind its back.
	if want := addrs("10.0.1.2", "10.0.0.2", "10.0.1.2", "10.0.0.2"); !slices.Equal(r.NextHops, want) {
		t.Errorf("normalize changed its input: %v", r.NextHops)
	}
	if r.Equal(n) {
		t.Error("un-normalized route compares equal to its normal form; Equal is documented for normalized routes only, so this test's premise is off")
	}
	if !n.Equal(Route{Prefix: pfx("10.1.0.0/16"), NextHops: addrs("10.0.1.2", "10.0.0.2")}.normalize()) {
		t.Error("two spellings of the same route are not equal after normalize")
	}
}

func TestRouteValidate(t *testing.T) {
	tests := []struct {
		name    string
		route   Route
		wantErr string // substring; empty means valid
	}{
		{name: "v4 single hop", route: via("10.1.0.0/24", "10.0.0.2")},
		{name: "v4 ECMP", route: via("10.1.0.0/24", "10.0.0.2", "10.0.1.2")},
		{name: "v6 ECMP", route: via("2001:db8:1::/64", "2001:db8::2", "fe80::1")},
		{name: "v4 default route", route: via("0.0.0.0/0", "10.0.0.2")},
		{name: "blackhole", route: blackhole("10.9.0.0/24")},
		{name: "v6 blackhole", route: blackhole("2001:db8:9::/64")},
		{name: "v4 prefix with v6 next hop", route: via("10.1.0.0/24", "2001:db8::2"), wantErr: "2001:db8::2"},
		{name: "v6 prefix with v4 next hop", route: via("2001:db8:1::/64", "10.0.0.2"), wantErr: "10.0.0.2"},
		{name: "one of two next hops of the wrong family", route: via("10.1.0.0/24", "10.0.0.2", "2001:db8::2"), wantErr: "2001:db8::2"},
		// A v4-mapped v6 address is not an IPv4 gateway to the kernel.
		{name: "v4 prefix with v4-mapped v6 next hop", route: via("10.1.0.0/24", "::ffff:10.0.0.2"), wantErr: "::ffff:10.0.0.2"},
		{name: "unspecified next hop", route: via("10.1.0.0/24", "0.0.0.0"), wantErr: "0.0.0.0"},
		{name: "zero next hop", route: Route{Prefix: pfx("2001:db8:1::/64"), NextHops: []netip.Addr{{}}}, wantErr: "not a usable address"},
		{name: "blackhole with next hops", route: Route{Prefix: pfx("10.9.0.0/24"), Blackhole: true, NextHops: addrs("10.0.0.2")}, wantErr: "blackhole"},
		{name: "no next hops", route: Route{Prefix: pfx("10.1.0.0/24")}, wantErr: "no next hops"},
		{name: "empty next hop list", route: Route{Prefix: pfx("10.1.0.0/24"), NextHops: []netip.Addr{}}, wantErr: "no next hops"},
		{name: "no prefix", route: Route{NextHops: addrs("10.0.0.2")}, wantErr: "no valid prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.route.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate(%v) = %v, want valid", tc.route, err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("validate(%v) = nil, want an error mentioning %q", tc.route, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("validate(%v) = %q, want it to mention %q", tc.route, err, tc.wantErr)
			}
		})
	}
}
