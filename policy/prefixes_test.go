package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestCanonicalPrefixes(t *testing.T) {
	pr := func(s string) addrRange { return prefixRange(netip.MustParsePrefix(s)) }
	cases := []struct {
		name string
		in   []addrRange
		cut  []addrRange
		want string
	}{
		{"one host", []addrRange{pr("10.0.0.5/32")}, nil, "[10.0.0.5/32]"},
		{"host inside a block disappears", []addrRange{pr("10.0.0.5/32"), pr("10.0.0.0/24")}, nil, "[10.0.0.0/24]"},
		{"adjacent hosts merge", []addrRange{pr("10.0.0.4/32"), pr("10.0.0.5/32")}, nil, "[10.0.0.4/31]"},
		{"unaligned neighbours stay apart", []addrRange{pr("10.0.0.5/32"), pr("10.0.0.6/32")}, nil, "[10.0.0.5/32 10.0.0.6/32]"},
		{"except in the middle", []addrRange{pr("10.0.0.0/24")}, []addrRange{pr("10.0.0.128/25")}, "[10.0.0.0/25]"},
		{"except one host", []addrRange{pr("10.0.0.0/30")}, []addrRange{pr("10.0.0.1/32")}, "[10.0.0.0/32 10.0.0.2/31]"},
		{"except everything", []addrRange{pr("10.0.0.0/24")}, []addrRange{pr("10.0.0.0/16")}, "[]"},
		{"except of the other family is ignored", []addrRange{pr("10.0.0.0/24")}, []addrRange{pr("::/0")}, "[10.0.0.0/24]"},
		{"the whole space", []addrRange{pr("0.0.0.0/0"), pr("::/0")}, nil, "[0.0.0.0/0 ::/0]"},
		{"ipv6 except", []addrRange{pr("fd00::/64")}, []addrRange{pr("fd00::/65")}, "[fd00::8000:0:0:0/65]"},
		{"families sorted, v4 first", []addrRange{pr("fd00::1/128"), pr("10.0.0.1/32")}, nil, "[10.0.0.1/32 fd00::1/128]"},
		{"the top of the space", []addrRange{pr("255.255.255.255/32"), pr("255.255.255.254/32")}, nil, "[255.255.255.254/31]"},
	}
	for _, tc := range cases {
		rs := normalize(tc.in)
		for _, c := range tc.cut {
			rs = subtract(rs, c)
		}
		got := fmt.Sprint(canonicalPrefixes(rs))
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
