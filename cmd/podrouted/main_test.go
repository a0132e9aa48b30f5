package main

import (
	"os"
	"path/filepath"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "podrouted.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const validConfig = `nodeName: node-1
routerID: 10.0.0.1
asn: 65001
podCIDRs: [10.244.1.0/24]
podPools: [10.244.0.0/16]
peers:
- address: 10.0.0.254
  asn: 65000
`

func TestRunExitCodes(t *testing.T) {
	good := writeConfig(t, validConfig)
	bad := writeConfig(t, "nodeName: node-1\nrouterID: fd00::1\nasn: 0\npodCIDRs: [10.244.1.0/24]\npodPools: [10.244.0.0/16]\n")
	unknown := writeConfig(t, validConfig+"bogusKey: 1\n")
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"valid, check only":    {[]string{"--config", good, "--check-config"}, 0},
		"invalid values":       {[]string{"--config", bad, "--check-config"}, 1},
		"unknown key":          {[]string{"--config", unknown, "--check-config"}, 1},
		"missing file":         {[]string{"--config", filepath.Join(t.TempDir(), "none.yaml"), "--check-config"}, 1},
		"flag fixes the asn":   {[]string{"--config", bad, "--asn", "65001", "--router-id", "10.0.0.1", "--check-config"}, 0},
		"flag breaks pod CIDR": {[]string{"--config", good, "--pod-cidrs", "192.168.0.0/24", "--check-config"}, 1},
		"unknown flag":         {[]string{"--nope"}, 2},
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("%s: run(%v) = %d, want %d", name, tc.args, got, tc.want)
		}
	}
}
