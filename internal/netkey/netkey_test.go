package netkey

import (
	"net/netip"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"10.244.1.0/24", "0.0.0.0/0", "192.0.2.7/32", "fd00:244:0:1::/64", "::/0", "::ffff:10.0.0.0/104"} {
		p := netip.MustParsePrefix(s)
		if got := Of(p).Prefix(); got != p {
			t.Errorf("Of(%s).Prefix() = %s", p, got)
		}
		if Of(p).Is6() != p.Addr().Is6() {
			t.Errorf("Of(%s).Is6() = %v", p, Of(p).Is6())
		}
	}
	// The same address bits as IPv4 and as IPv4-mapped IPv6 are different
	// keys.
	if Of(netip.MustParsePrefix("10.0.0.0/8")) == Of(netip.MustParsePrefix("::ffff:10.0.0.0/104")) {
		t.Error("an IPv4 prefix and an IPv4-mapped IPv6 prefix share a key")
	}
	if Of(netip.MustParsePrefix("10.0.0.0/8")) == Of(netip.MustParsePrefix("10.0.0.0/9")) {
		t.Error("prefixes differing in length share a key")
	}
}
