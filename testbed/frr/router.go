package frr

// FRR routers: one zebra + bgpd pair per namespace, each with its own
// pathspace (-N NAME), configured from one integrated frr.conf.
//
// Quirks of Debian's FRR 8.4 (8.4.4-1.1~deb12u2), found by trying them on a
// lab machine while writing this:
//
//   - The daemons drop privileges to user frr (compiled in: --enable-user=frr,
//     so -u/-g are not needed) BEFORE they write the pid file (-i) and read
//     the config (-f). Dir must therefore be writable by frr, frr.conf
//     readable by frr, and every parent of Dir traversable by frr. A dir under
//     t.TempDir() fails (its parents are 0700) with "Can't create pid lock
//     file ... (Permission denied), exiting".
//   - -z/--vty_socket are not needed: -N NAME puts the vty sockets and
//     zserv.api in /var/run/frr/NAME. The daemons create that directory
//     themselves when /var/run/frr is writable by frr; we create both (owned
//     by frr) anyway so a freshly booted machine without /var/run/frr works.
//   - vtysh needs no vtysh.conf: `vtysh -N NAME` prints "% Can't open
//     configuration file /etc/frr/NAME/vtysh.conf" on stderr and works. We
//     filter that line instead of writing into /etc/frr.
//   - Each daemon also listens on a TCP vty port (zebra 2601, bgpd 2605) on
//     all addresses of its namespace; -P 0 turns that off (vtysh uses the
//     unix sockets).
//   - With -d the `ip netns exec` parent returns once the daemon has forked,
//     and the daemon closes its stdio (no pipe hang); startup errors such as
//     the permission one above are printed by, and fail, that parent. The daemon itself is
//     reparented to PID 1, so we cannot wait() for it: the pid file is the
//     only handle, and we poll /proc. This machine's PID 1 reaps orphans
//     lazily, so a stopped daemon may linger as a zombie: a zombie counts as
//     gone (its /proc/PID/cmdline is empty).
//   - Stopped daemons leave their pid files and vty sockets behind; Stop
//     removes them.
//   - `show bgp summary json` answers "{}" both before the config is loaded
//     and for an instance without neighbours, so readiness also asks
//     `show bgp ipv4 unicast json`, which says {"warning":"Default BGP
//     instance not found"} until `router bgp` is configured.
//   - zebra reads the forwarding sysctls when it starts ("no ip forwarding"
//     otherwise): create namespaces with netns.Create before starting FRR.
//   - zebra deletes the kernel routes it installed on SIGTERM (we do not pass
//     -r), so Stop and Restart withdraw FRR's routes from the kernel. It
//     installs them through nexthop objects (`nhid N` in `ip route`), with
//     protocol "bgp".
//   - For IPv6 eBGP the BGP table lists the peer's global and link-local next
//     hops, and zebra installs the link-local one (fe80::..) in the kernel.
//   - `bgp default ipv4-unicast` is on, so an IPv6 neighbour would also carry
//     IPv4 unicast; Config deactivates that (see there).
//   - zebra and bgpd both read the whole integrated frr.conf and log "No such
//     command on config line N" for the other daemon's lines: harmless noise.
//   - --log file:PATH creates the log before dropping privileges (root, 0640).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/testbed/netns"
)

const (
	// RunDir holds one socket directory per pathspace: RunDir/NAME.
	RunDir = "/var/run/frr"

	DaemonDir       = "/usr/lib/frr"
	frrStartTimeout = 20 * time.Second
	frrStopTimeout  = 10 * time.Second
	vtyshTimeout    = 20 * time.Second

	// ZebraNetlinkBuffer is what Debian's /etc/frr/daemons passes as -s: a
	// large netlink receive buffer, so bursts of kernel notifications (the
	// lab's 100k-route benchmarks) do not overflow zebra's socket.
	ZebraNetlinkBuffer = "90000000"
)

// frrDaemons in start order: bgpd connects to zebra's zserv.api.
var frrDaemons = []string{"zebra", "bgpd"}

// Router is one running FRR instance inside a namespace.
type Router struct {
	NS       *netns.Namespace
	Name     string // FRR pathspace (-N); the namespace name, so vtysh -N NAME finds it
	Dir      string // frr.conf, pid files and logs; owned by user frr
	ConfPath string
}

// Start writes conf to dir/frr.conf and starts zebra and bgpd inside ns,
// then waits until bgpd answers vtysh. dir is created if missing and handed
// to user frr; it must not be under t.TempDir() (see the quirks above). On
// error nothing is left running.
func Start(ns *netns.Namespace, dir string, conf string) (*Router, error) {
	if ns == nil || dir == "" {
		return nil, errors.New("frr: Start needs a namespace and a directory")
	}
	f := &Router{NS: ns, Name: ns.Name, Dir: dir, ConfPath: filepath.Join(dir, "frr.conf")}
	uid, gid, err := frrUser()
	if err != nil {
		return nil, err
	}
	if err := f.writeConfig(conf, uid, gid); err != nil {
		return nil, err
	}
	if err := f.start(uid, gid); err != nil {
		return nil, err
	}
	return f, nil
}

func frrUser() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("frr: user frr (from Debian's frr package): %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func (f *Router) writeConfig(conf string, uid, gid int) error {
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	if err := os.Chown(f.Dir, uid, gid); err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	if err := checkTraversable(filepath.Dir(f.Dir), uid, gid); err != nil {
		return fmt.Errorf("frr %s: dir %s: %w", f.Name, f.Dir, err)
	}
	// root:frr 0640, like /etc/frr: the config may hold BGP passwords.
	if err := os.WriteFile(f.ConfPath, []byte(conf), 0o640); err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	return errors.Join(os.Chmod(f.ConfPath, 0o640), os.Chown(f.ConfPath, 0, gid))
}

// checkTraversable fails with a clear message when user uid/gid could not
// reach a file below dir.
func checkTraversable(dir string, uid, gid int) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		reachable := perm&0o001 != 0 ||
			(ok && int(st.Uid) == uid && perm&0o100 != 0) ||
			(ok && int(st.Gid) == gid && perm&0o010 != 0)
		if !reachable {
			return fmt.Errorf("user frr cannot enter %s (mode %v); use a directory it can reach, e.g. from os.MkdirTemp(\"\", ...)", p, perm)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (f *Router) start(uid, gid int) error {
	if err := f.makeRunDir(uid, gid); err != nil {
		return err
	}
	for _, d := range frrDaemons {
		if err := f.startDaemon(d); err != nil {
			return errors.Join(err, f.Stop())
		}
	}
	if err := f.waitReady(); err != nil {
		return errors.Join(err, f.Stop())
	}
	return nil
}

// RunDir is the instance's socket directory.
func (f *Router) RunDir() string { return filepath.Join(RunDir, f.Name) }

func (f *Router) makeRunDir(uid, gid int) error {
	for _, d := range []string{RunDir, f.RunDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("frr %s: %w", f.Name, err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("frr %s: %w", f.Name, err)
		}
	}
	return nil
}

func (f *Router) pidPath(daemon string) string { return filepath.Join(f.Dir, daemon+".pid") }

// LogPath is where daemon ("zebra", "bgpd") logs.
func (f *Router) LogPath(daemon string) string { return filepath.Join(f.Dir, daemon+".log") }

func (f *Router) startDaemon(daemon string) error {
	// A stale pid file must never be mistaken for the new daemon.
	if err := os.Remove(f.pidPath(daemon)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	argv := []string{filepath.Join(DaemonDir, daemon),
		"-N", f.Name, "-d", "-P", "0",
		"-f", f.ConfPath, "-i", f.pidPath(daemon), "--log", "file:" + f.LogPath(daemon)}
	if daemon == "zebra" {
		argv = append(argv, "-s", ZebraNetlinkBuffer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), frrStartTimeout)
	defer cancel()
	if _, err := f.NS.Exec(ctx, argv...); err != nil {
		return fmt.Errorf("frr %s: starting %s: %w\n%s", f.Name, daemon, err, f.LogTail(daemon, 20))
	}
	return nil
}

var routerBGPLine = regexp.MustCompile(`(?m)^\s*router bgp\s`)

func (f *Router) waitReady() error {
	conf, err := os.ReadFile(f.ConfPath)
	if err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	wantInstance := routerBGPLine.Match(conf)
	deadline := time.Now().Add(frrStartTimeout)
	for {
		err := f.readyOnce(wantInstance)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("frr %s: not ready after %v: %w\n%s", f.Name, frrStartTimeout, err, f.LogTail("bgpd", 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *Router) readyOnce(wantInstance bool) error {
	var summary map[string]json.RawMessage
	if err := f.VtyshJSON("show bgp summary json", &summary); err != nil {
		return err
	}
	if !wantInstance {
		return nil
	}
	var table bgpTableJSON
	if err := f.VtyshJSON("show bgp ipv4 unicast json", &table); err != nil {
		return err
	}
	if table.Warning != "" {
		return errors.New(table.Warning)
	}
	return nil
}

// LogTail returns the last lines of a daemon's log, for error messages.
func (f *Router) LogTail(daemon string, lines int) string {
	data, err := os.ReadFile(f.LogPath(daemon))
	if err != nil {
		return fmt.Sprintf("(no %s log: %v)", daemon, err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return fmt.Sprintf("--- %s log (last %d lines) ---\n%s", daemon, len(all), strings.Join(all, "\n"))
}

// PIDs returns the PID of each daemon that is running and verifiably ours.
func (f *Router) PIDs() map[string]int {
	pids := map[string]int{}
	for _, d := range frrDaemons {
		if pid, err := readPidFile(f.pidPath(d)); err == nil && f.isOurs(pid, d) {
			pids[d] = pid
		}
	}
	return pids
}

func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, data)
	}
	return pid, nil
}

// isOurs reports whether pid is a live (not zombie) daemon of this instance:
// its command line must be that daemon with "-N NAME". This guards against a
// stale pid file whose PID now belongs to someone else.
func (f *Router) isOurs(pid int, daemon string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 { // gone, or a zombie
		return false
	}
	argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	if filepath.Base(argv[0]) != daemon {
		return false
	}
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "-N" && argv[i+1] == f.Name {
			return true
		}
	}
	return false
}

// StopDaemon sends sig to one daemon ("zebra" or "bgpd") by the PID in its
// pid file, after checking the PID is ours, and waits for it to go; a daemon
// that outlives frrStopTimeout gets SIGKILL. SIGKILL on bgpd alone simulates
// a crash (e.g. for graceful-restart tests). A daemon that is not running is
// not an error.
func (f *Router) StopDaemon(daemon string, sig syscall.Signal) error {
	pid, err := readPidFile(f.pidPath(daemon))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	for _, step := range []struct {
		sig     syscall.Signal
		timeout time.Duration
	}{{sig, frrStopTimeout}, {syscall.SIGKILL, 5 * time.Second}} {
		if err := f.signalIfOurs(pid, daemon, step.sig); err != nil {
			return err
		}
		if f.waitGone(pid, daemon, step.timeout) {
			return os.Remove(f.pidPath(daemon))
		}
	}
	return fmt.Errorf("frr %s: %s (pid %d) still running after SIGKILL", f.Name, daemon, pid)
}

// signalIfOurs signals pid only if it is this instance's daemon. It holds a
// pidfd across the check and the signal, so a PID reused in between cannot
// be hit: the pidfd keeps referring to the process that was checked.
func (f *Router) signalIfOurs(pid int, daemon string, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("frr %s: pidfd for %s (pid %d): %w", f.Name, daemon, pid, err)
	}
	defer unix.Close(fd)
	if !f.isOurs(pid, daemon) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("frr %s: signal %v to %s (pid %d): %w", f.Name, sig, daemon, pid, err)
	}
	return nil
}

// waitGone polls until pid is no longer this instance's daemon: exited,
// a zombie, or (after reaping) reused by something else.
func (f *Router) waitGone(pid int, daemon string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for f.isOurs(pid, daemon) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Stop stops bgpd, then zebra (SIGTERM, then SIGKILL), and removes the run
// directory. It is idempotent.
func (f *Router) Stop() error {
	var errs []error
	for i := len(frrDaemons) - 1; i >= 0; i-- {
		errs = append(errs, f.StopDaemon(frrDaemons[i], syscall.SIGTERM))
	}
	if err := errors.Join(errs...); err != nil {
		return err // keep the sockets of whatever still runs
	}
	if err := os.RemoveAll(f.RunDir()); err != nil {
		return fmt.Errorf("frr %s: %w", f.Name, err)
	}
	return nil
}

// Restart stops the instance and starts it again from the same frr.conf.
func (f *Router) Restart() error {
	if err := f.Stop(); err != nil {
		return err
	}
	uid, gid, err := frrUser()
	if err != nil {
		return err
	}
	return f.start(uid, gid)
}
