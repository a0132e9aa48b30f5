package lab

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/podroute/podroute/testbed/kubenode"
	"github.com/podroute/podroute/testbed/netns"
)

// Memory is the resident memory (VmRSS, bytes) of what the lab runs,
// read from /proc for the processes its state records, so that any process
// can measure a running lab.
type Memory struct {
	Nodes []NodeMemory
	// ControlPlane is etcd, kube-apiserver, kube-controller-manager and
	// kube-scheduler, by name (Kubernetes mode).
	ControlPlane map[string]int64
	// Routers is every FRR daemon (bgpd, zebra) of every router.
	Routers int64
}

// NodeMemory is one node's share: podrouted and, in Kubernetes mode, the
// real node (kubelet, containerd, kube-proxy, the shims and every container
// process of its pods, CoreDNS included where it runs).
type NodeMemory struct {
	Name      string
	Podrouted int64
	Kube      kubenode.Usage
}

// Total is everything on the node.
func (n NodeMemory) Total() int64 { return n.Podrouted + n.Kube.Total() }

// ControlPlaneTotal sums the control plane.
func (m Memory) ControlPlaneTotal() int64 {
	var t int64
	for _, v := range m.ControlPlane {
		t += v
	}
	return t
}

// NodesTotal sums the nodes.
func (m Memory) NodesTotal() int64 {
	var t int64
	for _, n := range m.Nodes {
		t += n.Total()
	}
	return t
}

// Total is nodes, control plane and routers.
func (m Memory) Total() int64 { return m.NodesTotal() + m.ControlPlaneTotal() + m.Routers }

// Max keeps, per component, the larger of m and o (a peak over samples).
func (m Memory) Max(o Memory) Memory {
	out := Memory{ControlPlane: map[string]int64{}, Routers: max(m.Routers, o.Routers)}
	for k, v := range m.ControlPlane {
		out.ControlPlane[k] = v
	}
	for k, v := range o.ControlPlane {
		out.ControlPlane[k] = max(out.ControlPlane[k], v)
	}
	byName := map[string]NodeMemory{}
	var names []string
	for _, ns := range [][]NodeMemory{m.Nodes, o.Nodes} {
		for _, n := range ns {
			cur, seen := byName[n.Name]
			if !seen {
				names = append(names, n.Name)
				byName[n.Name] = n
				continue
			}
			if n.Total() > cur.Total() {
				byName[n.Name] = n
			}
		}
	}
	for _, n := range names {
		out.Nodes = append(out.Nodes, byName[n])
	}
	return out
}

// Memory measures the lab now.
func (l *Lab) Memory() Memory {
	l.state.mu.Lock()
	procs := append([]ProcessState(nil), l.state.st.Processes...)
	l.state.mu.Unlock()
	m := Memory{ControlPlane: map[string]int64{}}
	podrouted := map[string]int64{}
	for _, p := range procs {
		if !netns.ProcessMatches(p.PID, p.Marker) {
			continue
		}
		if node, ok := strings.CutPrefix(p.Name, "podrouted-"); ok {
			podrouted[node] += rssOf(p.PID)
		} else {
			m.ControlPlane[p.Name] += rssOf(p.PID)
		}
	}
	for _, n := range l.Plan.Nodes {
		nm := NodeMemory{Name: n.Name, Podrouted: podrouted[n.Name]}
		if dir := l.KubeNodeDir(n.Name); dir != "" {
			if ks, err := kubenode.ReadState(dir); err == nil {
				nm.Kube = kubenode.StateUsage(ks)
			}
		}
		m.Nodes = append(m.Nodes, nm)
	}
	if k := l.kubeState(); k != nil {
		for _, d := range k.NodeDirs {
			ks, err := kubenode.ReadState(d)
			if err != nil || ks.Name != "kube-scheduler" {
				continue
			}
			for _, p := range ks.Processes {
				if netns.ProcessMatches(p.PID, p.Marker) {
					m.ControlPlane["kube-scheduler"] += rssOf(p.PID)
				}
			}
		}
	}
	for _, r := range l.Plan.Routers {
		if f := l.frr[r.Name]; f != nil {
			for _, pid := range f.PIDs() {
				m.Routers += rssOf(pid)
			}
		}
	}
	return m
}

// Print writes a table: one row per node, then the control plane and the
// routers, in MiB.
func (m Memory) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	kube := false
	for _, n := range m.Nodes {
		if n.Kube.Total() > 0 {
			kube = true
		}
	}
	if kube {
		fmt.Fprintln(tw, "NODE\tTOTAL\tpodrouted\tkubelet\tcontainerd\tkube-proxy\tpods (shims + containers)\t")
	} else {
		fmt.Fprintln(tw, "NODE\tTOTAL\tpodrouted\t")
	}
	for _, n := range m.Nodes {
		if kube {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s (%d pods, %d processes)\t\n", n.Name, MiB(n.Total()), MiB(n.Podrouted),
				MiB(n.Kube.Kubelet), MiB(n.Kube.Containerd), MiB(n.Kube.KubeProxy), MiB(n.Kube.Shims+n.Kube.Containers), n.Kube.ShimCount, n.Kube.ContainerProcs)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", n.Name, MiB(n.Total()), MiB(n.Podrouted))
		}
	}
	tw.Flush()
	if len(m.ControlPlane) > 0 {
		var parts []string
		var names []string
		for k := range m.ControlPlane {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			parts = append(parts, k+" "+MiB(m.ControlPlane[k]))
		}
		fmt.Fprintf(w, "control plane: %s (%s)\n", MiB(m.ControlPlaneTotal()), strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "FRR routers: %s; lab total: %s\n", MiB(m.Routers), MiB(m.Total()))
}

// MiB formats bytes as MiB.
func MiB(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// rssOf reads VmRSS of pid.
func rssOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
