package kubenode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StateFile is the name of the record under a node's (or the scheduler's)
// directory that Cleanup works from.
const StateFile = "state.json"

// Proc is a process we started: Marker is a string its /proc/PID/cmdline
// contains (a path under the state directory), checked before any signal so
// that a reused PID is never hit.
type Proc struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Marker string `json:"marker"`
}

// State is what a node has made, written before each thing is made.
type State struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Processes in start order; teardown goes in reverse.
	Processes []Proc `json:"processes"`
	// MountNS is the holder's mount namespace ("mnt:[4026532...]"): every
	// process in it belongs to the node.
	MountNS string `json:"mountNS,omitempty"`
	// Socket is containerd's address; shims carry it as -address.
	Socket string `json:"socket,omitempty"`
	// Cgroups are the node's cgroup roots, one per hierarchy (absolute
	// paths under /sys/fs/cgroup), including the unified one.
	Cgroups []string `json:"cgroups,omitempty"`
}

type stateFile struct {
	mu   sync.Mutex
	path string
	s    State
}

func (f *stateFile) update(fn func(*State)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.s)
	b, err := json.MarshalIndent(f.s, "", "  ")
	if err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.path)
}

func (f *stateFile) get() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	s.Processes = append([]Proc(nil), f.s.Processes...)
	s.Cgroups = append([]string(nil), f.s.Cgroups...)
	return s
}

// ReadState reads DIR/state.json.
func ReadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// cmdline returns /proc/PID/cmdline with NULs as spaces, "" if the process
// is gone (or a zombie, whose cmdline is empty).
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '}))
}

// alive reports whether pid runs (exists and is not a zombie) and its
// command line contains marker.
func alive(pid int, marker string) bool {
	if pid <= 1 || pid == os.Getpid() {
		return false
	}
	c := cmdline(pid)
	return c != "" && strings.Contains(c, marker)
}

// stopProc sends SIGTERM to p if it is still ours, waits up to grace for it
// to go, then SIGKILLs it and waits up to 10 s more.
func stopProc(p Proc, grace time.Duration) error {
	if !alive(p.PID, p.Marker) {
		return nil
	}
	syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p.PID, p.Marker, grace) {
		return nil
	}
	if alive(p.PID, p.Marker) {
		syscall.Kill(p.PID, syscall.SIGKILL)
	}
	if waitGone(p.PID, p.Marker, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("kubenode: %s (pid %d) still running after SIGKILL", p.Name, p.PID)
}

func waitGone(pid int, marker string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !alive(pid, marker) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pids lists the PIDs in /proc.
func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// mountNS returns the mount namespace of pid as the kernel names it.
func mountNS(pid int) string {
	s, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	return s
}

// killMatching SIGKILLs every process (other than us and PID 1) for which
// match is true, repeating until none is left or d passes, and returns the
// ones still there.
func killMatching(match func(pid int) bool, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, pid := range pids() {
			if pid <= 1 || pid == os.Getpid() || !match(pid) {
				continue
			}
			if cmdline(pid) == "" && !isRunning(pid) {
				continue // zombie: its parent reaps it
			}
			left = append(left, pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isRunning reads the state letter of /proc/PID/stat: false for a zombie
// or a gone process.
func isRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// teardown undoes what s records, in reverse: the processes (newest first),
// the containerd shims, everything left in the node's cgroups and mount
// namespace, then the cgroups themselves and /var/lib/cni. It does not
// remove the state directory.
func teardown(s State, grace time.Duration) error {
	var errs []error
	// kube-proxy and kubelet first, so nothing restarts containers; then
	// the containers and the shims; containerd; the holder last (with it
	// goes the mount namespace and every mount in it).
	var containerd, holder *Proc
	for i := len(s.Processes) - 1; i >= 0; i-- {
		p := s.Processes[i]
		switch p.Name {
		case "containerd":
			containerd = &s.Processes[i]
			continue
		case "holder":
			holder = &s.Processes[i]
			continue
		}
		if err := stopProc(p, grace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Cgroups) > 0 {
		if left := killMatching(func(pid int) bool { return inCgroups(pid, s.Cgroups) }, 15*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("kubenode: processes %v still in the node's cgroups", left))
		}
	}
	if s.Socket != "" {
		marker := "-address " + s.Socket
		if left := killMatching(func(pid int) bool {
			c := cmdline(pid)
			return strings.Contains(c, "containerd-shim") && strings.Contains(c, marker)
		}, 10*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("kubenode: containerd shims %v still running", left))
		}
	}
	if containerd != nil {
		if err := stopProc(*containerd, grace); err != nil {
			errs = append(errs, err)
		}
	}
	if holder != nil {
		if err := stopProc(*holder, time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if s.MountNS != "" {
		// Anything still in the private mount namespace was started
		// inside it, so it is the node's.
		if left := killMatching(func(pid int) bool { return mountNS(pid) == s.MountNS }, 10*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("kubenode: processes %v still in the node's mount namespace", left))
		}
	}
	if len(s.Cgroups) > 0 {
		if err := removeCgroups(s.Cgroups, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	removeVarLibCNI()
	return errors.Join(errs...)
}

// Cleanup tears down what the node (or scheduler) whose state directory is
// dir left behind after a crash of the process that started it, from
// dir/state.json, and then removes dir except logs/. A directory without a
// state file is not an error.
func Cleanup(dir string) error {
	s, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kubenode: %s: %w", dir, err)
	}
	return errors.Join(teardown(s, 10*time.Second), removeDir(dir))
}

// removeDir removes everything in dir but logs/, the state file last.
func removeDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == "logs" || e.Name() == StateFile {
			continue
		}
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, StateFile))
}
