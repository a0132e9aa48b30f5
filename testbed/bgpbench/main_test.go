package bgpbench

import (
	"os"
	"testing"

	"github.com/podroute/podroute/testbed/testenv"
)

// TestMain removes the product binaries testenv.Binaries built for the
// flood and status benchmarks.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
