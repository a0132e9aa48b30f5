package routes

import (
	"net/netip"
	"strings"
	"testing"
)

// The node's own pod CIDR keeps its blackhole whatever ordinary updates
// say: a learned route for it is refused and a withdrawal of it is
// ignored, so traffic to unused pod addresses never leaks to the default
// route. Only SetBlackholes changes it.
func TestKernelOwnBlackholeProtected(t *testing.T) {
	requireRoot(t)
	ns := newLab(t)
	r := newReconciler(t, ns, Config{})
	start(t, r)
	own := netip.MustParsePrefix("10.3.0.0/24")
	if err := r.SetBlackholes([]netip.Prefix{own}); err != nil {
		t.Fatal(err)
	}
	err := r.Update([]Route{via("10.3.0.0/24", gwA1), via("10.1.0.0/24", gwA1)}, nil)
	if err == nil || !strings.Contains(err.Error(), "10.3.0.0/24") {
		t.Errorf("Update of the own prefix: err %v, want one naming 10.3.0.0/24", err)
	}
	if err := r.Update(nil, []netip.Prefix{own}); err != nil {
		t.Fatal(err)
	}
	assertOwnRoutes(t, ns, "main", blackhole("10.3.0.0/24"), via("10.1.0.0/24", gwA1))

	// SetBlackholes moves the blackhole; the old prefix is freed for
	// learned routes.
	if err := r.SetBlackholes([]netip.Prefix{netip.MustParsePrefix("10.4.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := r.Update([]Route{via("10.3.0.0/24", gwA1)}, nil); err != nil {
		t.Fatalf("learned route for a prefix that is no longer ours: %v", err)
	}
	assertOwnRoutes(t, ns, "main", blackhole("10.4.0.0/24"), via("10.1.0.0/24", gwA1), via("10.3.0.0/24", gwA1))
}
