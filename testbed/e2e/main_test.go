package e2e

import (
	"os"
	"testing"
)

// TestMain removes the binaries podrouteBinaries built for this run; they
// are tens of megabytes each and would pile up in /tmp run after run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
