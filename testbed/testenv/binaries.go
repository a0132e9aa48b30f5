package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The product binaries a test runs: podrouted, the podroute CLI, the
// podroute-cni plugin and the gobgp CLI at the GoBGP version podrouted
// embeds (a tool of go.mod). They are built once per test process, in one
// go build, into one directory that RemoveBinaries deletes.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Binaries builds the product binaries (once per process) and returns
// their directory: podrouted, podroute, podroute-cni and gobgp.
func Binaries(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "podroute-bin-")
		if binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/podroute/podroute/cmd/podrouted",
			"github.com/podroute/podroute/cmd/podroute",
			"github.com/podroute/podroute/cmd/podroute-cni",
			"github.com/osrg/gobgp/v4/cmd/gobgp").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build the podroute binaries: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binDir
}

// Binary is the path of one of the binaries Binaries builds.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	return filepath.Join(Binaries(tb), name)
}

// RemoveBinaries deletes what Binaries built; a package's TestMain calls it
// after m.Run, as the binaries are tens of megabytes each.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
