package netns_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

func TestHarnessProcessStopEscalatesToKill(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, false)
	c := testenv.NewCleanup(t)
	ns := testenv.CreateNetns(t, c, netns.NewRunID()+"-p")
	// probe0 on a bridge: visible to the process only if it runs in ns, and
	// exercises AddBridge and Attach on the way.
	if _, err := ns.IP("link", "add", "probe0", "type", "veth", "peer", "name", "probe1"); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(ns.AddBridge("br0"), ns.Attach("probe0", "br0")); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.IP("-o", "link", "show", "probe0"); err != nil || !strings.Contains(string(out), "master br0") {
		t.Errorf("probe0 not attached to br0: %s %v", out, err)
	}
	logPath := t.TempDir() + "/proc.log"
	// Ignored signals stay ignored across exec, so sleep ignores SIGTERM.
	p, err := netns.StartProcess(ns, "stubborn", logPath, "sh", "-c", `ip -o link show; trap "" TERM; echo ready; exec sleep 300`)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("process", p.Kill)

	testutil.Eventually(t, 5*time.Second, "process logged ready", func() error {
		data, _ := os.ReadFile(logPath)
		if !strings.Contains(string(data), "ready") {
			return fmt.Errorf("log so far: %q", data)
		}
		return nil
	})
	if data, _ := os.ReadFile(logPath); !strings.Contains(string(data), "probe0") {
		t.Errorf("process did not run inside %s (no probe0 in its view): %s", ns.Name, data)
	}

	start := time.Now()
	if err := p.Stop(syscall.SIGTERM, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the SIGTERM grace period", elapsed)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	var exitErr *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit = %v, want killed by SIGKILL", err)
	}
	if err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
