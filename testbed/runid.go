package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
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

// Cleanup is a LIFO stack of teardown steps: whatever was set up last is torn
// down first (processes before the namespaces they run in). The zero value is
// ready to use and safe for concurrent Add.
type Cleanup struct {
	mu    sync.Mutex
	steps []cleanupStep
}

type cleanupStep struct {
	what string
	fn   func() error
}

// Add pushes a teardown step. what names it in errors.
func (c *Cleanup) Add(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, cleanupStep{what: what, fn: fn})
}

// Run pops and runs every step, newest first. A failing or panicking step does
// not stop the others: a half-torn-down lab is the thing to avoid. Calling Run
// again runs only the steps added since, so it is safe to call it explicitly
// in a test and again from t.Cleanup.
func (c *Cleanup) Run() error {
	var errs []error
	for {
		step, ok := c.pop()
		if !ok {
			return errors.Join(errs...)
		}
		if err := runStep(step); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", step.what, err))
		}
	}
}

func (c *Cleanup) pop() (cleanupStep, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.steps) == 0 {
		return cleanupStep{}, false
	}
	step := c.steps[len(c.steps)-1]
	c.steps = c.steps[:len(c.steps)-1]
	return step, true
}

func runStep(step cleanupStep) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return step.fn()
}
