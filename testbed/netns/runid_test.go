package netns_test

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/podroute/podroute/testbed/netns"
)

func TestHarnessRunID(t *testing.T) {
	valid := regexp.MustCompile(`^pr[0-9a-f]{6}$`)
	seen := map[string]bool{}
	for range 20 {
		id := netns.NewRunID()
		if !valid.MatchString(id) {
			t.Fatalf("NewRunID() = %q, want %s", id, valid)
		}
		if seen[id] {
			t.Fatalf("NewRunID() repeated %q", id)
		}
		seen[id] = true
	}
	if name := netns.NewRunID() + "-r1xxx"; len(name) > netns.MaxIfNameLen {
		t.Errorf("%q is %d bytes, over the documented budget of %d", name, len(name), netns.MaxIfNameLen)
	}
}

func TestHarnessCleanupRunsLIFOAndOnlyOnce(t *testing.T) {
	var c netns.Cleanup
	var order []string
	step := func(name string, err error) func() error {
		return func() error { order = append(order, name); return err }
	}
	c.Add("first", step("first", nil))
	c.Add("second", step("second", errors.New("boom")))
	c.Add("third", func() error { order = append(order, "third"); panic("oops") })

	err := c.Run()
	if want := []string{"third", "second", "first"}; !slices.Equal(order, want) {
		t.Errorf("order = %v, want %v", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "cleanup second: boom") || !strings.Contains(err.Error(), "cleanup third: panic: oops") {
		t.Errorf("Run() error = %v, want both the error and the panic named", err)
	}
	if err := c.Run(); err != nil || len(order) != 3 {
		t.Errorf("second Run() = %v and ran %d steps in total, want nil and 3", err, len(order))
	}
}
