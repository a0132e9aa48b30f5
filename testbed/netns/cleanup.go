package netns

import (
	"errors"
	"fmt"
	"sync"
)

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
