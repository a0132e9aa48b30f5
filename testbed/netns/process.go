package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a long-running program we started (podrouted, bird, tcpdump),
// running in a namespace with stdout and stderr appended to LogPath.
type Process struct {
	Cmd     *exec.Cmd
	Name    string
	LogPath string

	done    chan struct{} // closed once Cmd.Wait has returned
	waitErr error
}

// StartProcess starts argv inside ns (or in the current namespace if ns is
// nil, for programs that only use loopback or files). name is for messages.
func StartProcess(ns *Namespace, name, logPath string, argv ...string) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("process %s: empty command", name)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process %s: log: %w", name, err)
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(argv...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	// An *os.File (not a pipe) means no copying goroutine and no waiting for
	// grandchildren that inherit the descriptor.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A session of its own: Ctrl-C on the terminal that ran `podroute-lab
	// up` must not reach the lab's daemons; they are stopped by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("process %s: start %v: %w", name, argv, err)
	}
	p := &Process{Cmd: cmd, Name: name, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID (the program's own: `ip netns exec` execs in place).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has exited and been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process exits and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Stop sends sig to the process (by its PID, through the os.Process we got
// from starting it, so it can never hit a stranger), waits up to timeout,
// then sends SIGKILL and waits for it to be reaped. Stopping a process that
// has already exited is not an error; the exit status is not one either,
// since a signalled process exits non-zero by definition.
func (p *Process) Stop(sig os.Signal, timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("process %s (pid %d): signal %v: %w", p.Name, p.Pid(), sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("process %s (pid %d): kill: %w", p.Name, p.Pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		// Only a process stuck in the kernel (D state) ignores SIGKILL this long.
		return fmt.Errorf("process %s (pid %d): still running 10s after SIGKILL", p.Name, p.Pid())
	}
}

// ProcessMatches reports whether pid runs and its command line contains
// marker.
func ProcessMatches(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(cmdline) == 0 {
		return false
	}
	return strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), marker)
}

// StopPID stops a process known only by its recorded PID (one started by
// an earlier run of the CLI), if it still runs with marker in its command
// line: pinned by a pidfd first, so the PID cannot be reused between the
// check and the signal; SIGTERM, then SIGKILL after 5 s.
func StopPID(pid int, marker string) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // gone
	}
	defer unix.Close(fd)
	if !ProcessMatches(pid, marker) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, syscall.SIGTERM, nil, 0); err != nil {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for ProcessMatches(pid, marker) {
		if time.Now().After(deadline) {
			_ = unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0)
			time.Sleep(200 * time.Millisecond)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
