package k8se2e

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Counts are the outcome of a run, from its JUnit report.
type Counts struct {
	Passed, Failed int
	// Skipped are specs the focus selected that skipped themselves at run
	// time (e2eskipper: too few nodes, a provider they need, ...); specs
	// the focus did not select are not counted.
	Skipped int
	// FailedSpecs and SkippedSpecs name them (with the skip message).
	FailedSpecs, SkippedSpecs []string
}

// Add sums two counts.
func (c Counts) Add(o Counts) Counts {
	return Counts{Passed: c.Passed + o.Passed, Failed: c.Failed + o.Failed, Skipped: c.Skipped + o.Skipped,
		FailedSpecs:  append(append([]string(nil), c.FailedSpecs...), o.FailedSpecs...),
		SkippedSpecs: append(append([]string(nil), c.SkippedSpecs...), o.SkippedSpecs...)}
}

// String is the closing line: "N passed, M failed".
func (c Counts) String() string { return fmt.Sprintf("%d passed, %d failed", c.Passed, c.Failed) }

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
}

// ParseJUnit counts the specs of a Ginkgo v2 JUnit report (the e2e
// framework writes one to --report-dir as junit_01.xml). Ginkgo lists
// every spec of the suite, with the ones the focus left out as skipped
// without a reason ("skipped" or nothing); the suite nodes
// ([SynchronizedBeforeSuite], [ReportAfterSuite], ...) count only when
// they fail.
func ParseJUnit(path string) (Counts, error) {
	var c Counts
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	var doc junitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		var one junitSuite
		if err2 := xml.Unmarshal(b, &one); err2 != nil {
			return c, fmt.Errorf("JUnit report %s: %w", path, err)
		}
		doc.Suites = []junitSuite{one}
	}
	for _, s := range doc.Suites {
		for _, tc := range s.Cases {
			suiteNode := strings.HasPrefix(tc.Name, "[SynchronizedBeforeSuite]") || strings.HasPrefix(tc.Name, "[SynchronizedAfterSuite]") ||
				strings.HasPrefix(tc.Name, "[BeforeSuite]") || strings.HasPrefix(tc.Name, "[AfterSuite]") ||
				strings.HasPrefix(tc.Name, "[ReportBeforeSuite]") || strings.HasPrefix(tc.Name, "[ReportAfterSuite]") ||
				strings.HasPrefix(tc.Name, "[DeferCleanup (Suite)]")
			status := tc.Status
			if status == "" {
				switch {
				case tc.Failure != nil || tc.Error != nil:
					status = "failed"
				case tc.Skipped != nil:
					status = "skipped"
				default:
					status = "passed"
				}
			}
			switch status {
			case "passed":
				if !suiteNode {
					c.Passed++
				}
			case "skipped", "pending":
				msg := ""
				if tc.Skipped != nil {
					msg = strings.TrimSpace(tc.Skipped.Message)
				}
				// Left out by the focus: no message, or Ginkgo's bare one.
				if msg == "" || msg == "skipped" || suiteNode {
					continue
				}
				c.Skipped++
				c.SkippedSpecs = append(c.SkippedSpecs, tc.Name+" ("+strings.TrimPrefix(msg, "skipped - ")+")")
			default: // failed, panicked, timedout, interrupted, aborted
				c.Failed++
				c.FailedSpecs = append(c.FailedSpecs, tc.Name+" ["+status+"]")
			}
		}
	}
	sort.Strings(c.FailedSpecs)
	sort.Strings(c.SkippedSpecs)
	return c, nil
}

// FindJUnit returns the JUnit report in dir (junit_01.xml, else the first
// junit*.xml).
func FindJUnit(dir string) (string, error) {
	p := filepath.Join(dir, "junit_01.xml")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob(filepath.Join(dir, "junit*.xml"))
	if len(m) == 0 {
		return "", fmt.Errorf("no JUnit report in %s", dir)
	}
	sort.Strings(m)
	return m[0], nil
}
