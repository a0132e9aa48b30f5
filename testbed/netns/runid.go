package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// RunIDPrefix starts every run ID, so leftovers of a crashed run can be
// spotted with `ip netns list | grep ^pr`.
const RunIDPrefix = "pr"

// MaxIfNameLen is the longest Linux interface name (IFNAMSIZ is 16 including
// the terminating NUL).
//
// Name budget: a run ID is 8 bytes ("pr" + 6 hex digits), so RUNID+"-"+suffix
// fits an interface name when the suffix is at most 6 bytes (e.g. "pr3f9a1c-r1"
// is 11). Interface names inside a namespace do not need the run ID at all
// (namespaces isolate them); the run ID is needed for namespace names, FRR
// pathspaces (/var/run/frr/NAME) and anything else visible machine-wide.
const MaxIfNameLen = 15

// NewRunID returns a short random ID such as "pr3f9a1c": letters and digits
// only, 8 bytes, starting with a letter so it is valid wherever a name is.
func NewRunID() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; if it ever does, a lab with a
		// non-unique name is worse than stopping.
		panic(fmt.Sprintf("testbed: reading random bytes: %v", err))
	}
	return RunIDPrefix + hex.EncodeToString(b[:])
}

func checkIfName(name string) error {
	if name == "" || len(name) > MaxIfNameLen {
		return fmt.Errorf("interface name %q: must be 1..%d bytes", name, MaxIfNameLen)
	}
	return nil
}
