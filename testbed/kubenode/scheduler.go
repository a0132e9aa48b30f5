package kubenode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/podroute/podroute/testbed/images"
)

// SchedulerConfig says how to run kube-scheduler with the lab's control
// plane. Netns, Dir and Kubeconfig are required.
type SchedulerConfig struct {
	// Netns is the control plane's network namespace (name or path).
	Netns string
	// Dir holds the scheduler's config, state file and logs/; it must be
	// empty or not exist. Stop removes it except logs/.
	Dir string
	// Kubeconfig is a kubeconfig with the scheduler's rights (the
	// control plane's admin kubeconfig does; a system:kube-scheduler token
	// would too), for use inside Netns.
	Kubeconfig string
	BinDir     string // "" means images.DefaultBinDir()
	// Port is the secure port on 127.0.0.1 inside Netns (health checks
	// only); default 10259.
	Port         int
	ReadyTimeout time.Duration // default 2 minutes
	Logf         func(format string, args ...any)
}

// Scheduler is a running kube-scheduler.
type Scheduler struct {
	cfg     SchedulerConfig
	st      *stateFile
	mu      sync.Mutex
	procs   []*proc
	stopped bool
	// Took is the time from start to a healthy /healthz.
	Took time.Duration
}

const schedulerConfig = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: %q}
# One scheduler, no one to elect.
leaderElection: {leaderElect: false}
`

// StartScheduler starts kube-scheduler inside the control plane's network
// namespace (plain nsenter --net: it mounts nothing) and waits until its
// /healthz is ok.
func StartScheduler(ctx context.Context, cfg SchedulerConfig) (s *Scheduler, err error) {
	if cfg.Netns == "" || cfg.Dir == "" || cfg.Kubeconfig == "" {
		return nil, errors.New("kubenode: SchedulerConfig needs Netns, Dir and Kubeconfig")
	}
	if cfg.BinDir == "" {
		cfg.BinDir = images.DefaultBinDir()
	}
	if cfg.Port == 0 {
		cfg.Port = 10259
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	bin := filepath.Join(cfg.BinDir, "kube-scheduler")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kubenode: %s missing; build it with `make k8s-node-tools`", bin)
	}
	if ents, err := os.ReadDir(cfg.Dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("kubenode: Dir %s is not empty", cfg.Dir)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(cfg.Dir, "kube-scheduler.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, schedulerConfig, cfg.Kubeconfig), 0o600); err != nil {
		return nil, err
	}
	s = &Scheduler{cfg: cfg, st: &stateFile{path: filepath.Join(cfg.Dir, StateFile), s: State{Name: "kube-scheduler", Dir: cfg.Dir}}}
	if err := s.st.update(func(*State) {}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
			s = nil
		}
	}()
	begin := time.Now()
	p, err := startProc(cfg.Dir, "kube-scheduler", conf, s.st, &s.mu, &s.procs,
		"nsenter", "--net="+NetnsPath(cfg.Netns), "--", bin,
		"--config="+conf, "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(cfg.Port), "--v=1")
	if err != nil {
		return s, err
	}
	// Its serving certificate is self-signed; this probe goes to our own
	// child on loopback of the namespace.
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: DialIn(NetnsPath(cfg.Netns)), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true,
	}}
	n := &Node{http: client}
	if err := waitProc(ctx, cfg.ReadyTimeout, p, "healthz", n.healthz("https://127.0.0.1:"+strconv.Itoa(cfg.Port)+"/healthz")); err != nil {
		return s, err
	}
	s.Took = time.Since(begin)
	cfg.Logf("kubenode: kube-scheduler healthy after %v", s.Took.Round(time.Millisecond))
	return s, nil
}

// Running returns an error if kube-scheduler has exited.
func (s *Scheduler) Running() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.exited() {
			return fmt.Errorf("kubenode: kube-scheduler exited: %v; end of its log:\n%s", p.cmd.ProcessState, tail(p.log, 15))
		}
	}
	return nil
}

// RSS is kube-scheduler's resident memory in bytes.
func (s *Scheduler) RSS() int64 {
	var sum int64
	for _, p := range s.st.get().Processes {
		if alive(p.PID, p.Marker) {
			sum += rss(p.PID)
		}
	}
	return sum
}

// Stop stops kube-scheduler (SIGTERM, SIGKILL after 10 s) and removes Dir
// except logs/. It is safe to call more than once.
func (s *Scheduler) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	err := teardown(s.st.get(), 10*time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	return errors.Join(err, removeDir(s.cfg.Dir))
}
