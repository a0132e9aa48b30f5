package lab

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/testbed/topology"
)

// Convergence is how far the lab is from fully routed.
type Convergence struct {
	SessionsUp, Sessions int
	RoutesIn, Routes     int
	Missing              []string // "node-1: 10.244.3.0/24", at most a few
}

// Done reports full convergence.
func (c Convergence) Done() bool { return c.SessionsUp == c.Sessions && c.RoutesIn == c.Routes }

// Converged checks sessions (every node's peers, every router-to-router
// neighbour) and routes (every node has every other node's pod CIDRs in
// its kernel with podroute's protocol).
func (l *Lab) Converged(ctx context.Context) Convergence {
	var c Convergence
	for _, r := range l.Plan.Routers {
		nbrs, _ := l.frr[r.Name].BGPNeighbors()
		for _, n := range r.Spec.Neighbors {
			c.Sessions++
			if nbrs[n.Address].State == "Established" {
				c.SessionsUp++
			}
		}
	}
	for _, n := range l.Plan.Nodes {
		c.Sessions += len(n.Config.Peers)
		st, err := l.NodeStatus(ctx, n.Name)
		if err == nil {
			for _, p := range st.Peers {
				if p.State == "Established" {
					c.SessionsUp++
				}
			}
		}
	}
	l.countRoutes(&c)
	return c
}

// RoutesConverged is the route half of Converged alone: one `ip route`
// per node and nothing asked of a router or podrouted, so it is cheap
// enough to poll every few milliseconds when timing a recovery.
func (l *Lab) RoutesConverged() Convergence {
	var c Convergence
	l.countRoutes(&c)
	return c
}

// countRoutes adds to c, for every node, the other nodes' pod CIDRs and
// which of them are in its kernel.
func (l *Lab) countRoutes(c *Convergence) {
	for _, n := range l.Plan.Nodes {
		routes, _ := l.ownRoutes(n.Name)
		for _, m := range l.Plan.Nodes {
			if m.Name == n.Name {
				continue
			}
			for _, cidr := range m.PodCIDRs {
				c.Routes++
				if routes[cidr.String()] {
					c.RoutesIn++
				} else if len(c.Missing) < 4 {
					c.Missing = append(c.Missing, n.Name+": "+cidr.String())
				}
			}
		}
	}
}

// ownRoutes is the set of destinations podroute installed on node.
func (l *Lab) ownRoutes(node string) (map[string]bool, error) {
	out := map[string]bool{}
	fams := []string{"ipv4"}
	if l.Plan.Topology.IPv6 {
		fams = append(fams, "ipv6")
	}
	for _, fam := range fams {
		routes, err := l.ns[node].KernelRoutes(fam)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			if r.Protocol == itoa(topology.RouteProtocol) && r.Type != "blackhole" {
				out[r.Dst] = true
			}
		}
	}
	return out, nil
}

// WaitConverged polls Converged until done, printing progress, or fails
// after timeout naming what is missing.
func (l *Lab) WaitConverged(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for {
		c := l.Converged(ctx)
		line := fmt.Sprintf("converging: BGP sessions %d/%d established, pod routes %d/%d installed", c.SessionsUp, c.Sessions, c.RoutesIn, c.Routes)
		if line != last {
			l.progress("  %s  (%.1fs)", line, time.Since(start).Seconds())
			last = line
		}
		if c.Done() {
			l.progress("converged in %.1fs", time.Since(start).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab did not converge in %v: %s; missing e.g. %v (logs in %s)", timeout, line, c.Missing, l.opts.StateDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// NodeStatus asks node's podrouted for its status over the unix socket.
func (l *Lab) NodeStatus(ctx context.Context, node string) (*api.GetStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := api.Dial(ctx, l.Socket(node))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return api.NewStatusClient(conn).GetStatus(ctx, &api.GetStatusRequest{})
}

// PrintSessions writes every BGP session of every router and node.
func (l *Lab) PrintSessions(ctx context.Context, w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SPEAKER\tPEER\tPEER AS\tSTATE\tPREFIXES RECEIVED")
	names := l.peerNames()
	for _, r := range l.Plan.Routers {
		nbrs, err := l.frr[r.Name].BGPNeighbors()
		if err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\tunreachable: %v\t-\n", r.Name, err)
			continue
		}
		addrs := make([]string, 0, len(nbrs))
		for a := range nbrs {
			addrs = append(addrs, a)
		}
		sort.Strings(addrs)
		for _, a := range addrs {
			n := nbrs[a]
			fmt.Fprintf(tw, "%s (FRR)\t%s%s\t%d\t%s\t%d\n", r.Name, a, names[a], n.RemoteAS, n.State, n.PrefixesReceived)
		}
	}
	for _, n := range l.Plan.Nodes {
		st, err := l.NodeStatus(ctx, n.Name)
		if err != nil {
			fmt.Fprintf(tw, "%s (podrouted)\t-\t-\tunreachable: %v\t-\n", n.Name, err)
			continue
		}
		for _, p := range st.Peers {
			fmt.Fprintf(tw, "%s (podrouted)\t%s%s\t%d\t%s\t%d\n", n.Name, p.Address, names[p.Address], p.Asn, p.State, p.Accepted)
		}
	}
	tw.Flush()
}

// peerNames maps lab addresses to " (element)" for display.
func (l *Lab) peerNames() map[string]string {
	out := map[string]string{}
	for _, r := range l.Plan.Routers {
		for _, i := range r.Ifaces {
			for _, a := range i.Addrs {
				out[a.Addr().String()] = " (" + r.Name + ")"
			}
		}
	}
	for _, n := range l.Plan.Nodes {
		for _, a := range n.Addresses() {
			out[a.String()] = " (" + n.Name + ")"
		}
	}
	return out
}

// Reachability is the pod-to-pod ping matrix.
type Reachability struct {
	Pods     []topology.PodPlan
	Families []string // "IPv4", "IPv6"
	// Result[src][dst][family] is true when the ping came back.
	Result map[string]map[string]map[string]bool
}

// AllOK reports whether every pair answered in every family.
func (r *Reachability) AllOK() bool { return r.Failures() == 0 }

// Failures counts failed (pair, family) pings.
func (r *Reachability) Failures() int {
	n := 0
	for _, s := range r.Pods {
		for _, d := range r.Pods {
			if s.Name == d.Name {
				continue
			}
			for _, f := range r.Families {
				if !r.Result[s.Name][d.Name][f] {
					n++
				}
			}
		}
	}
	return n
}

// Pods lists every pod of the lab.
func (l *Lab) Pods() []topology.PodPlan {
	var out []topology.PodPlan
	for _, n := range l.Plan.Nodes {
		out = append(out, n.PodPlans...)
	}
	return out
}

// PingMatrix pings from every pod to every other pod (each family once,
// a few in parallel).
func (l *Lab) PingMatrix(ctx context.Context) *Reachability { return l.PingPods(ctx, l.Pods()) }

// PingPods is PingMatrix over some of the pods only.
func (l *Lab) PingPods(ctx context.Context, pods []topology.PodPlan) *Reachability {
	r := &Reachability{Pods: pods, Families: []string{"IPv4"}, Result: map[string]map[string]map[string]bool{}}
	if l.Plan.Topology.IPv6 {
		r.Families = append(r.Families, "IPv6")
	}
	type job struct {
		src, dst topology.PodPlan
		fam      int
	}
	var jobs []job
	for _, s := range r.Pods {
		r.Result[s.Name] = map[string]map[string]bool{}
		for _, d := range r.Pods {
			r.Result[s.Name][d.Name] = map[string]bool{}
			if s.Name == d.Name {
				continue
			}
			for fi := range r.Families {
				jobs = append(jobs, job{s, d, fi})
			}
		}
	}
	run := l.podRunner(ctx)
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func(j job) {
			defer wg.Done()
			defer func() { <-sem }()
			ok := false
			if j.fam < len(j.dst.Addrs) {
				// Up to 3 tries: the first packet of a fresh pair may wait on
				// neighbour discovery along the path.
				out, err := run(ctx, j.src.Name, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", j.dst.Addrs[j.fam].String())
				ok = err == nil && !strings.Contains(string(out), " 0 received")
			}
			mu.Lock()
			r.Result[j.src.Name][j.dst.Name][r.Families[j.fam]] = ok
			mu.Unlock()
		}(j)
	}
	wg.Wait()
	return r
}

// Print writes the matrix: one row per source pod, one column per
// destination pod.
func (r *Reachability) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprint(tw, "FROM \\ TO")
	for _, d := range r.Pods {
		fmt.Fprintf(tw, "\t%s", d.Name)
	}
	fmt.Fprintln(tw)
	for _, s := range r.Pods {
		fmt.Fprintf(tw, "%s (%s)", s.Name, s.Addrs[0])
		for _, d := range r.Pods {
			if s.Name == d.Name {
				fmt.Fprint(tw, "\t-")
				continue
			}
			var cells []string
			for _, f := range r.Families {
				if r.Result[s.Name][d.Name][f] {
					cells = append(cells, "OK")
				} else {
					cells = append(cells, "FAIL")
				}
			}
			fmt.Fprintf(tw, "\t%s", strings.Join(cells, "/"))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	total := len(r.Pods) * (len(r.Pods) - 1) * len(r.Families)
	fmt.Fprintf(w, "%d of %d pod pairs reachable (%s)\n", total-r.Failures(), total, strings.Join(r.Families, ", "))
}
