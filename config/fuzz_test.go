package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse loads arbitrary bytes as a configuration file. Loading must
// never panic; a file it accepts must validate again unchanged; and a
// file it refuses must be refused with field errors only, each naming a
// field and saying what is allowed, unless the file is not a YAML mapping
// at all (then there is no field to name). `go test` runs the seeds;
// `go test -fuzz FuzzParse ./config` explores.
func FuzzParse(f *testing.F) {
	f.Add(fileWith(nil))
	if b, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(b)
	}
	for _, repl := range []map[string]string{
		// The type errors and wrong-but-accepted values of issue 8.
		{"asn": `asn: "65201"`}, {"asn": "asn: -1"}, {"asn": "asn: 4294967296"},
		{"podCIDRs": "podCIDRs: 10.244.1.0/24"}, {"peers": "peers: 10.10.1.1"},
		{"peers": "peers:\n- address: 192.0.2.1\n  asn: 65001\n  maxPrefixes: -1\n  multihopTTL: 256"},
		{"nodeName": "nodeName: " + strings.Repeat("n", 5000)},
		{"gracefulRestart": "gracefulRestart:\n  restartTime: 65536s"},
		{"peers": "peers:\n- address: 192.0.2.11\n  asn: 65001"},
		{"peers": "peers:\n- address: 255.255.255.255\n  asn: 65001"},
		{"peers": "peers:\n- address: 192.0.2.1\n  asn: 65001\n  holdTime: 1.5\n  password: " + strings.Repeat("p", 100)},
		{"maxPrefixHoldTime": "maxPrefixHoldTime: -3s"},
		{"unknown": "NodeName: x\nnodename: y"},
		{"peers": "peers:\n- {address: 192.0.2.1, asn: 65001, port: 0x10, passive: yes}"},
		{"podPools": "podPools: [[10.244.0.0/16], {a: b}, null, 3]"},
	} {
		f.Add(fileWith(repl))
	}
	for _, s := range []string{"", "null", "[]", "- a\n- b", "{", "a: [", "\t", "asn: 1\nasn: 2", "~", "42",
		"nodeName: &a x\nrouterID: *a", "!!binary aGk=", "peers: [{}]", "gracefulRestart: 3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("a config Parse accepted does not validate again: %v", err)
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse returned a config with the error %v", err)
		}
		fields := FieldErrors(err)
		if len(fields) == 0 {
			msg := err.Error()
			if !strings.HasPrefix(msg, "not valid YAML") && !strings.HasPrefix(msg, "not a configuration") {
				t.Fatalf("an error that is neither a field error nor about the document as a whole: %v", err)
			}
			return
		}
		if leaf := nonFieldLeaf(err); leaf != nil {
			t.Fatalf("beside %d field errors, one that names no field: %q (%T)", len(fields), leaf, leaf)
		}
		for _, fe := range fields {
			if fe.Field == "" || fe.Allowed == "" {
				t.Fatalf("a field error without a field or without what is allowed: %#v", fe)
			}
			if msg := fe.Error(); len(msg) > 4096 {
				t.Fatalf("a %d-byte message for one field (long values must be cut): %.200q", len(msg), msg)
			}
		}
	})
}

// nonFieldLeaf returns an error inside err, however joined or wrapped,
// that is neither a *FieldError nor wraps one; nil if there is none.
func nonFieldLeaf(err error) error {
	if _, ok := err.(*FieldError); ok {
		return nil
	}
	var kids []error
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		kids = u.Unwrap()
	case interface{ Unwrap() error }:
		kids = []error{u.Unwrap()}
	default:
		return err
	}
	for _, k := range kids {
		if k == nil {
			continue
		}
		if leaf := nonFieldLeaf(k); leaf != nil {
			return leaf
		}
	}
	return nil
}
