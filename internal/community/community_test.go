package community

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"64512:100", 64512<<16 | 100, true},
		{"0:0", 0, true},
		{"65535:65535", 0xffffffff, true},
		{"65536:1", 0, false},
		{"1:65536", 0, false},
		{"1", 0, false},
		{"1:2:3", 0, false},
		{"a:b", 0, false},
		{"-1:2", 0, false},
		{" 1:2", 0, false},
	} {
		got, err := ParseStandard(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseStandard(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && FormatStandard(got) != tc.in {
			t.Errorf("FormatStandard(%d) = %q, want %q", got, FormatStandard(got), tc.in)
		}
	}
	for _, tc := range []struct {
		in   string
		want [3]uint32
		ok   bool
	}{
		{"64512:1:100", [3]uint32{64512, 1, 100}, true},
		{"4294967295:0:4294967295", [3]uint32{4294967295, 0, 4294967295}, true},
		{"4294967296:0:0", [3]uint32{}, false},
		{"1:2", [3]uint32{}, false},
		{"1:2:x", [3]uint32{}, false},
	} {
		got, err := ParseLarge(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseLarge(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && FormatLarge(got) != tc.in {
			t.Errorf("FormatLarge(%v) = %q, want %q", got, FormatLarge(got), tc.in)
		}
	}
}
