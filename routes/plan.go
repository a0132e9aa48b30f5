package routes

import (
	"net/netip"
	"sort"
)

// write is one route to put into the kernel. replace is true when the
// kernel already holds a route of ours for the prefix (so NLM_F_REPLACE is
// safe); a new prefix is created exclusively so that a route of another
// protocol at the same key is never overwritten.
type write struct {
	route   Route
	replace bool
}

// plan is the pure diff at the heart of the reconciler: what to write and
// what to delete so that kernel (our protocol's routes only) matches
// desired. keep reports prefixes that must not be deleted even though they
// are not desired (routes adopted from a previous run, before the table
// has been re-learned). Results are sorted by prefix for deterministic
// batches.
func plan(desired, kernel map[netip.Prefix]Route, keep func(netip.Prefix) bool) (writes []write, deletes []Route) {
	for p, want := range desired {
		have, ok := kernel[p]
		switch {
		case !ok:
			writes = append(writes, write{route: want})
		case !have.Equal(want):
			writes = append(writes, write{route: want, replace: true})
		}
	}
	for p, have := range kernel {
		if _, ok := desired[p]; ok {
			continue
		}
		if keep != nil && keep(p) {
			continue
		}
		deletes = append(deletes, have)
	}
	sort.Slice(writes, func(i, j int) bool { return comparePrefix(writes[i].route.Prefix, writes[j].route.Prefix) < 0 })
	sort.Slice(deletes, func(i, j int) bool { return comparePrefix(deletes[i].Prefix, deletes[j].Prefix) < 0 })
	return writes, deletes
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
