package bird

// BIRD routers: one `bird` process per namespace, run in the foreground
// (-f) as a child of ours, so it is stopped by the PID we started and
// never by name.
//
// Quirks of Debian's BIRD 2.0.12 (bird2 2.0.12-7), found by trying them
// on a lab machine while writing this:
//
//   - Installing bird2 enables bird.service, which runs BIRD in the
//     machine's own namespace with /etc/bird/bird.conf where services are
//     started at install time. The lab never uses that instance, its
//     config or its socket (/run/bird/bird.ctl); each instance here has
//     its own config, control socket and pid file in its directory.
//   - Without a `log` statement BIRD logs to syslog; Config logs to stderr,
//     which Start appends to the instance's log file. Session state changes
//     are only logged with `debug protocols { states }` (RouterSpec.Debug).
//   - birdc needs no namespace: the control socket is a file. `birdc -v`
//     prints the reply codes of BIRD's control protocol (doc/reply_codes in
//     BIRD's source): a line "NNNN-text" or "NNNN text" (the last line of
//     a reply) starts a reply of code NNNN; a line starting with five
//     spaces continues the reply before it. Codes 8xxx and 9xxx are errors,
//     and then birdc also exits 1. state.go parses that.
//   - Protocol names in commands are symbols: `show protocols all n_a`
//     is a syntax error (9001) for a name that does not exist; quoted
//     ("n_a*") it is a pattern, and one that matches nothing is the
//     run-time error 8003 "No protocols match".
//   - `show route` does not mark routes that a restarting neighbour left
//     stale (graceful restart): the route lines look the same, and their
//     time is that of the last change. The protocol says
//     "Neighbor graceful restart active" and has a "Restart timer" while
//     it keeps them (Protocol.GracefulRestartActive). A route the restarted
//     neighbour sends again unchanged keeps its time (BIRD counts the
//     update as "ignored"); when the neighbour's new OPEN says it kept no
//     forwarding state for the family (no F flag, as from a BIRD restarted
//     without -R), BIRD drops the stale routes at once and learns
//     them anew, with a new time. Only long-lived-GR stale routes are
//     marked ("(100s)", Route.LLStale).
//   - `show protocols all` lists the capabilities of the neighbour's OPEN
//     for the current session, with "Restart recovery" for the R flag and
//     "AF preserved" for the families with the F flag
//     (Protocol.NeighborGRCapability).
//   - The kernel protocol writes its routes with protocol "bird" (12) and
//     removes them when BIRD stops cleanly (SIGTERM); after SIGKILL they
//     stay in the namespace's kernel.
//   - SIGTERM shuts BIRD down cleanly (a Cease NOTIFICATION to each peer)
//     and it removes its pid file and control socket; after SIGKILL both
//     are left behind, so start and Signal remove them.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podroute/podroute/testbed/netns"
)

const (
	// Binary is Debian's BIRD 2 daemon; Birdc its client.
	Binary = "/usr/sbin/bird"
	Birdc  = "/usr/sbin/birdc"

	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	birdcTimeout = 20 * time.Second
)

// Router is one running BIRD instance inside a namespace.
type Router struct {
	NS       *netns.Namespace
	Name     string // for messages: the namespace's name
	Dir      string // bird.conf, bird.ctl, bird.pid, bird.log
	ConfPath string
	Socket   string // the control socket, for birdc -s
	PidPath  string
	LogPath  string
	// Proc is the running bird process (a new one after Restart). Its
	// PID is bird's own: `ip netns exec` execs in place.
	Proc *netns.Process
}

// Start writes conf to dir/bird.conf and starts BIRD inside ns, then waits
// until it answers on its control socket. dir is created if missing. On
// error nothing is left running.
func Start(ns *netns.Namespace, dir string, conf string) (*Router, error) {
	if ns == nil || dir == "" {
		return nil, errors.New("bird: Start needs a namespace and a directory")
	}
	r := &Router{NS: ns, Name: ns.Name, Dir: dir,
		ConfPath: filepath.Join(dir, "bird.conf"),
		Socket:   filepath.Join(dir, "bird.ctl"),
		PidPath:  filepath.Join(dir, "bird.pid"),
		LogPath:  filepath.Join(dir, "bird.log"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bird %s: %w", r.Name, err)
	}
	// 0600: the config may hold BGP passwords.
	if err := os.WriteFile(r.ConfPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("bird %s: %w", r.Name, err)
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Router) start() error {
	// A socket or pid file left by a killed instance must not be
	// mistaken for the new one.
	for _, p := range []string{r.Socket, r.PidPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bird %s: %w", r.Name, err)
		}
	}
	p, err := netns.StartProcess(r.NS, "bird "+r.Name, r.LogPath,
		Binary, "-f", "-c", r.ConfPath, "-s", r.Socket, "-P", r.PidPath)
	if err != nil {
		return fmt.Errorf("bird %s: %w", r.Name, err)
	}
	r.Proc = p
	deadline := time.Now().Add(startTimeout)
	for {
		if p.Exited() {
			return fmt.Errorf("bird %s: exited at start: %v\n%s", r.Name, p.Wait(), r.LogTail(20))
		}
		reply, err := r.Command("show status")
		if err == nil && reply.Contains(13, "Daemon is up and running") {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("bird %s: not up after %v: %v\n%s", r.Name, startTimeout, err, r.LogTail(20)), r.Stop())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the running bird's PID (0 when there is none).
func (r *Router) Pid() int {
	if r.Proc == nil || r.Proc.Exited() {
		return 0
	}
	return r.Proc.Pid()
}

// Signal stops BIRD with sig and waits until it is gone: SIGTERM is a clean
// shutdown (peers get a Cease, kernel routes are removed), SIGKILL a crash
// (routes stay in the kernel, peers see the connection drop: a graceful
// restart if it was negotiated). A BIRD that outlives stopTimeout gets
// SIGKILL. Stopping a stopped instance is not an error.
func (r *Router) Signal(sig syscall.Signal) error {
	if r.Proc == nil {
		return nil
	}
	if err := r.Proc.Stop(sig, stopTimeout); err != nil {
		return fmt.Errorf("bird %s: %w", r.Name, err)
	}
	var errs []error
	for _, p := range []string{r.Socket, r.PidPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop shuts BIRD down cleanly (SIGTERM, then SIGKILL). It is idempotent.
func (r *Router) Stop() error { return r.Signal(syscall.SIGTERM) }

// Kill crashes BIRD (SIGKILL).
func (r *Router) Kill() error { return r.Signal(syscall.SIGKILL) }

// Restart stops BIRD (cleanly) if it runs and starts it again from the
// same bird.conf.
func (r *Router) Restart() error {
	if err := r.Stop(); err != nil {
		return err
	}
	return r.start()
}

// Reconfigure writes conf to bird.conf and has the running BIRD load it
// (`birdc configure`): sessions whose protocol did not change stay up.
func (r *Router) Reconfigure(conf string) error {
	if err := os.WriteFile(r.ConfPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("bird %s: %w", r.Name, err)
	}
	reply, err := r.Command("configure")
	if err != nil {
		return err
	}
	if !reply.Contains(3, "") && !reply.Contains(4, "") { // 0003 Reconfigured, 0004 Reconfiguration in progress
		return fmt.Errorf("bird %s: configure: %s", r.Name, reply)
	}
	return nil
}

// LogTail returns the last lines of BIRD's log, for error messages.
func (r *Router) LogTail(lines int) string {
	data, err := os.ReadFile(r.LogPath)
	if err != nil {
		return fmt.Sprintf("(no bird log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return fmt.Sprintf("--- bird %s log (last %d lines) ---\n%s", r.Name, len(all), strings.Join(all, "\n"))
}
