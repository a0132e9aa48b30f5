package testutil

import (
	"os"
	"testing"
)

// Existence is whether a path existed when recorded, for a test that must
// leave the machine as it found it (e.g. /var/lib/cni, which the real-node
// lab creates on a machine without one and must remove again).
type Existence struct {
	path    string
	existed bool
}

// RecordExistence records whether path exists now.
func RecordExistence(path string) Existence {
	_, err := os.Stat(path)
	return Existence{path: path, existed: err == nil}
}

// Check fails tb if path's existence differs from when it was recorded.
func (e Existence) Check(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(e.path); (err == nil) != e.existed {
		tb.Errorf("%s existed before: %v, after: %v", e.path, e.existed, err == nil)
	}
}
