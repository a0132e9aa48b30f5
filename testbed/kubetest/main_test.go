package kubetest

import (
	"os"
	"testing"

	"github.com/podroute/podroute/testbed/testenv"
)

// TestMain removes the binaries testenv.Binaries built for this run.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
