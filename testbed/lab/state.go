package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// DefaultStateDir keeps what `podroute-lab down` needs to tear a lab
// down, even after `up` crashed half-way.
const DefaultStateDir = "/run/podroute-lab"

// State is written to StateDir/state.json before each thing is
// created, so teardown knows about everything that may exist.
type State struct {
	RunID      string             `json:"runID"`
	Topology   *topology.Topology `json:"topology"` // as it is now, nodes added later included
	Namespaces []string           `json:"namespaces"`
	Processes  []ProcessState     `json:"processes"`
	FRR        []FRRState         `json:"frr"`
	Started    time.Time          `json:"started"`
	// PodAddrs are the addresses podroute-cni gave each pod.
	PodAddrs map[string][]string `json:"podAddrs,omitempty"`
	// PodCIDRs are the nodes' pod CIDRs when Kubernetes assigned them
	// (Kubernetes mode); otherwise the plan's.
	PodCIDRs map[string][]string `json:"podCIDRs,omitempty"`
	// Kubernetes is set in Kubernetes mode; its control plane's processes
	// are in Processes.
	Kubernetes *KubeState `json:"kubernetes,omitempty"`
}

// ProcessState is a process the lab started; Marker is a string its
// command line contains (its own config path), checked before it is
// signalled so a reused PID is never hit.
type ProcessState struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Marker string `json:"marker"`
}

// FRRState locates an FRR instance (its namespace and directory).
type FRRState struct {
	Namespace string `json:"namespace"`
	Dir       string `json:"dir"`
}

// stateFile guards State on disk.
type stateFile struct {
	mu   sync.Mutex
	path string
	st   *State
}

func (s *stateFile) update(fn func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.st)
	data, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	return os.Rename(tmp, s.path)
}

// ReadState loads the state of the lab in dir; it returns nil, nil if
// there is none.
func ReadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", dir, err)
	}
	return &st, nil
}

// Alive reports whether anything of the lab still exists.
func (st *State) Alive() bool {
	for _, n := range st.Namespaces {
		if (&netns.Namespace{Name: n}).Exists() {
			return true
		}
	}
	for _, p := range st.Processes {
		if netns.ProcessMatches(p.PID, p.Marker) {
			return true
		}
	}
	return false
}

// Teardown removes everything recorded in dir's state, best effort and
// idempotent: processes (checked to be ours; podrouted first, then a
// Kubernetes control plane), FRR instances, namespaces (also any left with
// the run's prefix), and the state dir itself.
func Teardown(dir string) error {
	st, err := ReadState(dir)
	if err != nil || st == nil {
		return err
	}
	var errs []error
	if k := st.Kubernetes; k != nil {
		// The real nodes first (kubelet, kube-proxy, containers,
		// containerd, kube-scheduler), while their namespaces exist.
		if err := cleanupRealNodes(dir, k); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(st.Processes) - 1; i >= 0; i-- {
		p := st.Processes[i]
		if err := netns.StopPID(p.PID, p.Marker); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		}
	}
	if k := st.Kubernetes; k != nil && k.Dir != "" {
		// Components started before a crash could record them.
		if err := stopStrays(k.Namespace, k.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range st.FRR {
		inst := &frr.Router{NS: &netns.Namespace{Name: f.Namespace}, Name: f.Namespace, Dir: f.Dir, ConfPath: filepath.Join(f.Dir, "frr.conf")}
		if err := inst.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	names := append([]string(nil), st.Namespaces...)
	if st.RunID != "" {
		if more, err := netns.List(st.RunID + "-"); err == nil {
			names = append(names, more...)
		}
	}
	for i := len(names) - 1; i >= 0; i-- {
		if err := (&netns.Namespace{Name: names[i]}).Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
