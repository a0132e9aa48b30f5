package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
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
	mistyped := writeConfig(t, strings.Replace(validConfig, "asn: 65001", `asn: "65001"`, 1))
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"valid, check only":    {[]string{"--config", good, "--check-config"}, 0},
		"invalid values":       {[]string{"--config", bad, "--check-config"}, 1},
		"unknown key":          {[]string{"--config", unknown, "--check-config"}, 1},
		"mistyped value":       {[]string{"--config", mistyped, "--check-config"}, 1},
		"mistyped, kubernetes": {[]string{"--config", mistyped, "--kubernetes"}, 1},
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

// stderrOf runs run(args) and returns what it printed on stderr.
func stderrOf(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	code := run(args)
	os.Stderr = saved
	w.Close()
	out, _ := io.ReadAll(r)
	return code, string(out)
}

// A mistyped value is reported like every other problem of the file, in
// the layout README shows, with the other problems of the same file.
func TestRunReportsTypeErrorsWithTheRest(t *testing.T) {
	path := writeConfig(t, strings.Replace(validConfig, "asn: 65001", "asn: \"65001\"\nlogLevel: loud", 1)+"  maxPrefixes: -1\n")
	code, out := stderrOf(t, "--config", path, "--check-config")
	want := "podrouted: invalid configuration in " + path + ":\n" +
		"  asn: invalid value \"65001\": must be 1..4294967294 (not 23456, AS_TRANS); write it without quotes (in quotes, YAML reads a string)\n" +
		"  peers[0].maxPrefixes: invalid value \"-1\": must be 1..10000000; leave it out for 10000 (there is no unlimited)\n" +
		"  logLevel: invalid value \"loud\": must be one of debug, info, warn, error\n"
	if code != 1 || out != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, out, want)
	}
	// README's example, word for word.
	path = writeConfig(t, strings.Replace(strings.Replace(validConfig, "asn: 65001", "asn: 0", 1), "10.244.1.0/24", "10.244.1.5/24", 1))
	code, out = stderrOf(t, "--config", path, "--check-config")
	want = "podrouted: invalid configuration in " + path + ":\n" +
		"  asn: invalid value \"0\": must be 1..4294967294 (not 23456, AS_TRANS)\n" +
		"  podCIDRs[0]: invalid value \"10.244.1.5/24\": must be a network address (no host bits set): use 10.244.1.0/24\n"
	if code != 1 || out != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, out, want)
	}
}
