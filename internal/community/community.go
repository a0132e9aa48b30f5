// Package community reads and writes BGP communities in the forms operators
// write them: standard (RFC 1997) as "ASN:value", each part 0..65535, and
// large (RFC 8092) as "global:local1:local2", each part 0..4294967295.
//
// It exists because two packages take communities from operators and must
// accept exactly the same spellings: config (the static file's
// servicePrefixes) and cluster (BGPConfiguration's service ranges). bgp,
// which puts them on the wire, takes numbers and knows nothing about text.
// This package imports only the standard library.
package community

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseStandard reads "ASN:value" into ASN<<16 | value.
func ParseStandard(s string) (uint32, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 {
		return 0, fmt.Errorf("%q is not a standard community: want ASN:value, two numbers 0..65535 (e.g. 64512:100)", s)
	}
	var v [2]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a standard community: %q must be a number 0..65535 (ASN:value, e.g. 64512:100)", s, p)
		}
		v[i] = n
	}
	return uint32(v[0]<<16 | v[1]), nil
}

// ParseLarge reads "global:local1:local2".
func ParseLarge(s string) ([3]uint32, error) {
	var out [3]uint32
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return out, fmt.Errorf("%q is not a large community: want global:local1:local2, three numbers 0..4294967295 (e.g. 64512:1:100)", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return out, fmt.Errorf("%q is not a large community: %q must be a number 0..4294967295 (global:local1:local2)", s, p)
		}
		out[i] = uint32(n)
	}
	return out, nil
}

// FormatStandard writes c as "ASN:value".
func FormatStandard(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// FormatLarge writes c as "global:local1:local2".
func FormatLarge(c [3]uint32) string { return fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2]) }
