package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// RunDir is where `ip netns add` pins named namespaces.
const RunDir = "/var/run/netns"

// Namespace is a named network namespace created with `ip netns add`, so that
// `ip netns exec NAME` and `vtysh -N NAME` (via FRR's pathspace) work on it.
type Namespace struct {
	Name string
}

// RouterSysctls are set in every namespace: each one can be a router, and
// IPv6 duplicate address detection would hold new addresses in "tentative"
// (unusable) state for a second or more, making tests slow and flaky. Both
// "all" and "default" are set so interfaces created later inherit the value.
// ECMP keeps Linux's default hash (addresses only, fib_multipath_hash_policy
// 0): one client always reaches the same node, so ClientIP session affinity
// of a Service advertised from several nodes holds (each node's kube-proxy
// keeps its own affinity table). Hashing on ports would spread one client's
// connections over the nodes and break it.
var RouterSysctls = []struct{ Key, Value string }{
	{"net.ipv4.ip_forward", "1"},
	{"net.ipv6.conf.all.forwarding", "1"},
	{"net.ipv6.conf.all.accept_dad", "0"},
	{"net.ipv6.conf.default.accept_dad", "0"},
	{"net.ipv4.conf.all.rp_filter", "0"},
	{"net.ipv4.conf.default.rp_filter", "0"},
}

// Create creates the namespace, brings lo up and sets RouterSysctls.
// It fails if the name is taken (it never adopts someone else's namespace),
// and on any later error deletes what it created.
func Create(name string) (*Namespace, error) {
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("namespace name %q: must be non-empty without '/' or spaces", name)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &Namespace{Name: name}
	if err := n.setUpAsRouter(); err != nil {
		return nil, errors.Join(err, n.Delete())
	}
	return n, nil
}

func (n *Namespace) setUpAsRouter() error {
	if err := n.SetUp("lo"); err != nil {
		return err
	}
	return n.Do(func() error {
		for _, s := range RouterSysctls {
			// /proc/sys/net resolves against the calling thread's network
			// namespace, which Do has switched.
			path := "/proc/sys/" + strings.ReplaceAll(s.Key, ".", "/")
			if err := os.WriteFile(path, []byte(s.Value), 0o644); err != nil {
				return fmt.Errorf("namespace %s: sysctl %s=%s: %w", n.Name, s.Key, s.Value, err)
			}
		}
		return nil
	})
}

// Command returns a command that runs argv inside the namespace via
// `ip netns exec`. ip execs argv in place, so the command's PID is argv's PID.
func (n *Namespace) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Exec runs argv inside the namespace and returns its combined output; the
// error includes that output so a failing test says why.
func (n *Namespace) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
	// A daemon that forks and keeps our output pipe open must not hang us.
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("namespace %s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Do runs fn with the calling OS thread switched into the namespace and then
// switches back. fn runs on a fresh goroutine locked to its thread (as
// containernetworking's ns.Do does): if switching back fails, that goroutine
// exits still locked and the Go runtime destroys the thread instead of
// reusing it in the wrong namespace. Goroutines that fn starts do not inherit
// the namespace.
func (n *Namespace) Do(fn func() error) error {
	target, err := vnetns.GetFromName(n.Name)
	if err != nil {
		return fmt.Errorf("namespace %s: open: %w", n.Name, err)
	}
	defer target.Close()

	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			result <- fmt.Errorf("namespace %s: get current namespace: %w", n.Name, err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(target); err != nil {
			runtime.UnlockOSThread()
			result <- fmt.Errorf("namespace %s: enter: %w", n.Name, err)
			return
		}
		fnErr := callRecovering(fn)
		if err := vnetns.Set(orig); err != nil {
			// Stay locked on purpose: see the doc comment.
			result <- errors.Join(fnErr, fmt.Errorf("namespace %s: switching back: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		result <- fnErr
	}()
	return <-result
}

func callRecovering(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic inside namespace: %v", r)
		}
	}()
	return fn()
}

// Exists reports whether the namespace is still pinned under RunDir.
func (n *Namespace) Exists() bool {
	_, err := os.Stat(filepath.Join(RunDir, n.Name))
	return err == nil
}

// Delete removes the namespace. A namespace that is already gone is not an
// error, so Delete is safe to call from several cleanup paths. Processes
// still running inside keep the namespace alive after its name is gone: stop
// them first.
func (n *Namespace) Delete() error {
	if !n.Exists() {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil && n.Exists() {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// List returns the names of the named namespaces starting with prefix
// (all of them for ""), sorted. It reads RunDir, as `ip netns list` does.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}
