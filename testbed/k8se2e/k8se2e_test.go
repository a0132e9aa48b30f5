package k8se2e

import (
	"regexp"
	"strings"
	"testing"
)

func TestParseJUnit(t *testing.T) {
	c, err := ParseJUnit("testdata/junit_01.xml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Passed != 2 || c.Failed != 1 || c.Skipped != 1 {
		t.Errorf("counts %+v, want 2 passed (suite nodes not counted), 1 failed, 1 skipped at run time (the focus's leftovers not counted)", c)
	}
	if len(c.FailedSpecs) != 1 || !strings.Contains(c.FailedSpecs[0], "node-pod communication: udp") {
		t.Errorf("failed specs %v", c.FailedSpecs)
	}
	if len(c.SkippedSpecs) != 1 || !strings.Contains(c.SkippedSpecs[0], "(Only supported for providers") {
		t.Errorf("skipped specs %v", c.SkippedSpecs)
	}
	if s := c.String(); s != "2 passed, 1 failed" {
		t.Errorf("closing line %q", s)
	}
	if _, err := FindJUnit("testdata"); err != nil {
		t.Error(err)
	}
}

// Every suite's focus and leave, and the skip list, are valid Go (RE2)
// regexps as ginkgo compiles them, and every skip says why.
func TestSuitesAndSkips(t *testing.T) {
	names := map[string]bool{}
	for _, s := range Suites {
		if names[s.Name] {
			t.Errorf("suite %s twice", s.Name)
		}
		names[s.Name] = true
		for _, re := range []string{s.Focus, s.Leave} {
			if _, err := regexp.Compile(re); err != nil {
				t.Errorf("suite %s: %v", s.Name, err)
			}
		}
		if s.Procs < 1 || s.About == "" {
			t.Errorf("suite %s: procs %d, about %q", s.Name, s.Procs, s.About)
		}
	}
	for _, sk := range Skips {
		if _, err := regexp.Compile(sk.Pattern); err != nil || len(sk.Reason) < 20 {
			t.Errorf("skip %q: %v, reason %q", sk.Pattern, err, sk.Reason)
		}
	}
	if _, err := regexp.Compile(SkipPattern()); err != nil {
		t.Error(err)
	}
	// The Conformance suite selects what its name says and the network
	// suite covers it.
	conf, _ := SuiteNamed("conformance")
	net, _ := SuiteNamed("network")
	spec := "[sig-network] Services should serve a basic endpoint from pods  [Conformance]"
	for _, s := range []Suite{conf, net} {
		if !regexp.MustCompile(s.Focus).MatchString(spec) || regexp.MustCompile(s.Leave).MatchString(spec) {
			t.Errorf("suite %s does not select %q", s.Name, spec)
		}
	}
	if _, err := SuiteNamed("nope"); err == nil {
		t.Error("an unknown suite was accepted")
	}
}
