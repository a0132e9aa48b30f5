package e2e

import (
	"os"
	"testing"

	"github.com/podroute/podroute/testbed/testenv"
)

// TestMain removes the binaries testenv.Binaries built for this run; they
// are tens of megabytes each and would pile up in /tmp run after run.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
