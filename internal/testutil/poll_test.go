package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPollReturnsOnceTrue(t *testing.T) {
	calls := 0
	took, ok := Poll(time.Millisecond, time.Second, func() bool { calls++; return calls == 3 })
	if !ok || calls != 3 {
		t.Fatalf("Poll = %v, %v after %d calls; want true after 3", took, ok, calls)
	}
	if took <= 0 || took > time.Second {
		t.Errorf("took = %v, want between 0 and 1s", took)
	}
}

func TestPollGivesUpAtTimeout(t *testing.T) {
	took, ok := Poll(time.Millisecond, 20*time.Millisecond, func() bool { return false })
	if ok {
		t.Fatal("Poll of a condition that never holds returned true")
	}
	if took < 20*time.Millisecond {
		t.Errorf("gave up after %v, before the 20ms timeout", took)
	}
}

// failRecorder records Fatalf and Errorf instead of failing the test.
type failRecorder struct {
	testing.TB
	msg string
}

func (r *failRecorder) Helper() {}
func (r *failRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}
func (r *failRecorder) Errorf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	r := &failRecorder{TB: t}
	EventuallyEvery(r, time.Millisecond, 10*time.Millisecond, "thing", func() error { return errors.New("not yet") })
	if !strings.Contains(r.msg, "thing") || !strings.Contains(r.msg, "not yet") {
		t.Fatalf("Eventually of a condition that never holds failed with %q; want what and the last error", r.msg)
	}
	if got := Eventually(t, time.Second, "at once", func() error { return nil }); got > DefaultInterval {
		t.Errorf("a condition true at once took %v", got)
	}
}
