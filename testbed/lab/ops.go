package lab

// Operations on a running lab, for the end-to-end scenarios and for anyone
// poking at a lab by hand: grow and shrink it (AddNode, RemoveNode), break
// and mend a node's uplink, restart a router, capture packets, list links.
//
// Each changes the lab the way an operator or a fault would, never the
// lab's bookkeeping alone: a node added here is in state.json (so Attach
// and `podroute-lab down` see it) before anything of it exists.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// AddNode adds node name, with AS asn and pods pods, to LAN lan of the
// running lab: a namespace plugged into the LAN's bridge, podrouted with its
// own configuration, and its pods (through podroute-cni, as at Up). It
// takes the next node index (so the next pod CIDRs) and the next address
// of the LAN. Routers are not touched:
// a LAN with a gateway accepts any speaker from its subnet (dynamic
// neighbours). A LAN with Mesh is refused, since every other member would
// need a new peer.
//
// AddNode does not wait for convergence; WaitConverged covers the new node.
func (l *Lab) AddNode(ctx context.Context, name, lan string, asn uint32, pods int) (*topology.NodePlan, error) {
	if l.Kubernetes() {
		return nil, fmt.Errorf("add node %s: not supported in Kubernetes mode (the node would need a Node object)", name)
	}
	topo, err := cloneTopology(l.Plan.Topology)
	if err != nil {
		return nil, err
	}
	li := slices.IndexFunc(topo.LANs, func(x topology.LAN) bool { return x.Name == lan })
	if li < 0 {
		return nil, fmt.Errorf("add node %s: no LAN %q in topology %s", name, lan, topo.Name)
	}
	if topo.LANs[li].Mesh {
		return nil, fmt.Errorf("add node %s: LAN %s is a full mesh; its members would need a new peer each", name, lan)
	}
	topo.Nodes = append(topo.Nodes, topology.Node{Name: name, ASN: asn, Pods: pods, Rack: lan})
	topo.LANs[li].Members = append(topo.LANs[li].Members, name)
	plan, err := topology.NewPlan(topo)
	if err != nil {
		return nil, fmt.Errorf("add node %s: %w", name, err)
	}
	keepNodes(plan, l.Plan)
	np := plan.Nodes[len(plan.Nodes)-1]
	var wire topology.Wire
	for _, w := range plan.Wires {
		if w.B == name {
			wire = w
		}
	}
	var bridge string
	for _, b := range plan.Bridges {
		if slices.Contains(b.Ports, wire.AIf) && b.In == wire.A {
			bridge = b.Name
		}
	}
	if wire.A == "" || bridge == "" || l.ns[wire.A] == nil {
		return nil, fmt.Errorf("add node %s: LAN %s has no bridge in this lab", name, lan)
	}
	// Recorded first: a teardown after a failure below must know the node.
	if err := l.state.update(func(s *State) { s.Topology = topo }); err != nil {
		return nil, err
	}
	l.Plan = plan
	if _, err := l.createNS(name); err != nil {
		return nil, err
	}
	if err := netns.Veth(l.ns[wire.A], wire.AIf, l.ns[name], wire.BIf, 1500); err != nil {
		return nil, fmt.Errorf("add node %s: %w", name, err)
	}
	if err := l.ns[wire.A].Attach(wire.AIf, bridge); err != nil {
		return nil, err
	}
	if err := l.addAddrs(name, np.Ifaces); err != nil {
		return nil, err
	}
	if err := l.addDefaultRoutes(name, np.Gateways); err != nil {
		return nil, err
	}
	if err := l.startNode(np); err != nil {
		return nil, err
	}
	for i := range np.PodPlans {
		if err := l.addPodCNI(ctx, np, &np.PodPlans[i]); err != nil {
			return nil, err
		}
	}
	return np, nil
}

// keepNodes puts the running nodes' plans (with the pod addresses CNI
// gave them, which NewPlan cannot know) into a plan recomputed for a
// changed topology. Nodes keep their positions, so the two agree on them.
func keepNodes(plan, running *topology.Plan) {
	for i, n := range plan.Nodes {
		if i < len(running.Nodes) && running.Nodes[i].Name == n.Name {
			plan.Nodes[i] = running.Nodes[i]
		}
	}
}

// RemoveNode takes node name out of the lab the way a node leaves a
// cluster: podrouted gets SIGINT (it sends its peers a Cease and withdraws
// its routes), then the node's pods and namespace are deleted, which
// unplugs it from its LAN. Only the last node of the topology, and the last
// member of its LANs, can go (a node added with AddNode is): removing
// another would renumber the pod CIDRs and addresses of the ones after it.
func (l *Lab) RemoveNode(ctx context.Context, name string) error {
	if l.Kubernetes() {
		return fmt.Errorf("remove node %s: not supported in Kubernetes mode (its Node object would stay)", name)
	}
	topo, err := cloneTopology(l.Plan.Topology)
	if err != nil {
		return err
	}
	if len(topo.Nodes) == 0 || topo.Nodes[len(topo.Nodes)-1].Name != name {
		return fmt.Errorf("remove node %s: only the last node of the topology can be removed (the plan numbers nodes by position)", name)
	}
	if len(topo.Nodes) == 1 {
		return fmt.Errorf("remove node %s: it is the lab's only node", name)
	}
	for i, lan := range topo.LANs {
		if j := slices.Index(lan.Members, name); j >= 0 {
			if j != len(lan.Members)-1 {
				return fmt.Errorf("remove node %s: it is not the last member of LAN %s (addresses are numbered by position)", name, lan.Name)
			}
			if lan.Mesh {
				return fmt.Errorf("remove node %s: LAN %s is a full mesh; the other members peer with it by configuration", name, lan.Name)
			}
			topo.LANs[i].Members = lan.Members[:j]
		}
	}
	topo.Nodes = topo.Nodes[:len(topo.Nodes)-1]
	plan, err := topology.NewPlan(topo)
	if err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	keepNodes(plan, l.Plan)
	old := l.Node(name)
	// Its pods go first, through CNI DEL, as kubelet drains a node; best
	// effort: the namespaces are deleted below anyway.
	if conf, err := l.cniNetworkConfig(ctx, name); err == nil {
		for i := range old.PodPlans {
			_, _ = l.runCNI(ctx, "DEL", name, &old.PodPlans[i], conf)
		}
	}
	if err := l.StopDaemon(name, syscall.SIGINT); err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	delete(l.procs, name)
	var errs []error
	for _, pod := range old.PodPlans {
		if ns := l.ns[pod.Name]; ns != nil {
			errs = append(errs, ns.Delete())
			delete(l.ns, pod.Name)
		}
	}
	if ns := l.ns[name]; ns != nil {
		errs = append(errs, ns.Delete())
		delete(l.ns, name)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove node %s: %w", name, err)
	}
	l.Plan = plan
	return l.state.update(func(s *State) {
		s.Topology = topo
		for _, pod := range old.PodPlans {
			delete(s.PodAddrs, pod.Name)
		}
	})
}

func cloneTopology(t *topology.Topology) (*topology.Topology, error) {
	data, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var out topology.Topology
	return &out, json.Unmarshal(data, &out)
}

// Uplink is a node's connection to its LAN: the node's interface and the
// bridge port at the other end (in the gateway router's or the switch's
// namespace).
type Uplink struct {
	Node, NodeIf     string
	Bridge, BridgeIf string // element holding the bridge, and the port
}

// Uplinks lists node's uplinks (one per LAN it is on).
func (l *Lab) Uplinks(node string) []Uplink {
	var out []Uplink
	for _, w := range l.Plan.Wires {
		if w.B == node {
			out = append(out, Uplink{Node: node, NodeIf: w.BIf, Bridge: w.A, BridgeIf: w.AIf})
		}
	}
	return out
}

// CutUplink unplugs node from its LANs as a pulled cable or a dead switch
// port would: the bridge port goes down and so does the node's interface.
// Nothing tells BGP: the peers find out when their hold timers expire.
func (l *Lab) CutUplink(node string) error {
	ups := l.Uplinks(node)
	if len(ups) == 0 {
		return fmt.Errorf("node %s has no uplink", node)
	}
	var errs []error
	for _, u := range ups {
		errs = append(errs, l.ns[u.Bridge].SetDown(u.BridgeIf), l.ns[u.Node].SetDown(u.NodeIf))
	}
	return errors.Join(errs...)
}

// RestoreUplink plugs node back in (undoes CutUplink).
func (l *Lab) RestoreUplink(node string) error {
	ups := l.Uplinks(node)
	if len(ups) == 0 {
		return fmt.Errorf("node %s has no uplink", node)
	}
	var errs []error
	for _, u := range ups {
		errs = append(errs, l.ns[u.Bridge].SetUp(u.BridgeIf), l.ns[u.Node].SetUp(u.NodeIf))
	}
	return errors.Join(errs...)
}

// SetNodeUplink sets node's own uplink interfaces down or up (`ip link set
// dev down|up` inside the node), as a flapping NIC would.
func (l *Lab) SetNodeUplink(node string, up bool) error {
	ups := l.Uplinks(node)
	if len(ups) == 0 {
		return fmt.Errorf("node %s has no uplink", node)
	}
	var errs []error
	for _, u := range ups {
		if up {
			errs = append(errs, l.ns[node].SetUp(u.NodeIf))
		} else {
			errs = append(errs, l.ns[node].SetDown(u.NodeIf))
		}
	}
	return errors.Join(errs...)
}

// RestartRouter restarts FRR (zebra and bgpd) on router name from its
// frr.conf. Its sessions drop and its kernel routes go (zebra withdraws
// them on SIGTERM) until it has re-learned them.
func (l *Lab) RestartRouter(name string) error {
	f := l.frr[name]
	if f == nil {
		return fmt.Errorf("no router %s", name)
	}
	return f.Restart()
}

// LinkInfo is one interface as `ip -d -j link` reports it.
type LinkInfo struct {
	Name  string `json:"ifname"`
	State string `json:"operstate"`
	Flags []string
	Kind  string // linkinfo.info_kind: "veth", "bridge", "vxlan", ...; "" for lo
}

// Links lists the interfaces of element (router, switch, node or pod) with
// their kinds.
func (l *Lab) Links(elem string) ([]LinkInfo, error) {
	ns := l.ns[elem]
	if ns == nil {
		return nil, fmt.Errorf("no element %s", elem)
	}
	out, err := ns.IP("-d", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Name     string   `json:"ifname"`
		State    string   `json:"operstate"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("%s: parsing ip -d -j link: %w", ns.Name, err)
	}
	links := make([]LinkInfo, 0, len(raw))
	for _, r := range raw {
		links = append(links, LinkInfo{Name: r.Name, State: r.State, Flags: r.Flags, Kind: r.LinkInfo.Kind})
	}
	return links, nil
}

// Elements lists every namespace of the lab by element name: routers,
// switches, nodes and pods.
func (l *Lab) Elements() []string {
	out := make([]string, 0, len(l.ns))
	for name := range l.ns {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Capture is a running tcpdump inside one lab namespace.
type Capture struct {
	Elem string
	cmd  *exec.Cmd
	out  bytes.Buffer // stdout: one line per packet
	done chan struct{}
	err  error
}

// StartCapture runs `tcpdump -n -l -i iface -c count filter...` inside
// element elem and returns once tcpdump is listening, so that traffic sent
// afterwards is seen. iface "any" captures on every interface of the
// namespace. The capture ends after count packets, on Stop, or when ctx is
// done; whatever happens, Lines ends it.
func (l *Lab) StartCapture(ctx context.Context, elem, iface string, count int, filter ...string) (*Capture, error) {
	ns := l.ns[elem]
	if ns == nil {
		return nil, fmt.Errorf("no element %s", elem)
	}
	argv := append([]string{"tcpdump", "-n", "-l", "-i", iface, "-c", strconv.Itoa(count)}, filter...)
	c := &Capture{Elem: elem, cmd: ns.Command(argv...), done: make(chan struct{})}
	// Read only after the process is waited for, when os/exec has copied
	// everything.
	c.cmd.Stdout = &c.out
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("capture in %s: %w", ns.Name, err)
	}
	listening := make(chan struct{})
	var errText strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), "listening on") {
				seen = true
				close(listening)
				continue
			}
			errText.WriteString(sc.Text() + "\n")
		}
		_, _ = io.Copy(io.Discard, stderr)
		c.err = c.cmd.Wait()
		if !seen {
			c.err = fmt.Errorf("tcpdump in %s: %v: %s", ns.Name, c.err, errText.String())
		}
		close(c.done)
	}()
	select {
	case <-listening:
	case <-c.done:
		return nil, c.err
	case <-time.After(10 * time.Second):
		c.Stop()
		return nil, fmt.Errorf("tcpdump in %s: not listening after 10s", ns.Name)
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
	go func() {
		select {
		case <-ctx.Done():
			c.Stop()
		case <-c.done:
		}
	}()
	return c, nil
}

// Stop ends the capture (SIGTERM, by the PID we started) and waits for it.
func (c *Capture) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Lines waits up to timeout for the capture to end by itself (count
// packets seen), stops it otherwise, and returns the captured packet lines.
func (c *Capture) Lines(timeout time.Duration) []string {
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.Stop()
	}
	text := strings.TrimSpace(c.out.String())
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

// RIBPath is one path of a prefix in a router's BGP table.
type RIBPath struct {
	Peer    string // the neighbour it came from ("0.0.0.0"/"::" when local)
	NextHop string
	Valid   bool
	Best    bool
	// Stale marks a path kept by graceful restart after its session
	// ended, until the peer is back or the stale timer runs out.
	Stale bool
}

// RIBPaths returns router's whole BGP table for family "ipv4" or "ipv6",
// every path with its flags (FRR.RIB keeps valid next hops only).
func (l *Lab) RIBPaths(router, family string) (map[string][]RIBPath, error) {
	f := l.frr[router]
	if f == nil {
		return nil, fmt.Errorf("no router %s", router)
	}
	if _, err := netns.FamilyFlag(family); err != nil {
		return nil, err
	}
	var table struct {
		Warning string `json:"warning"`
		Routes  map[string][]struct {
			Valid    bool   `json:"valid"`
			Best     bool   `json:"bestpath"`
			Stale    bool   `json:"stale"`
			PeerID   string `json:"peerId"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := f.VtyshJSON("show bgp "+family+" unicast json", &table); err != nil {
		return nil, err
	}
	if table.Warning != "" {
		return nil, fmt.Errorf("frr %s: %s", f.Name, table.Warning)
	}
	out := map[string][]RIBPath{}
	for prefix, paths := range table.Routes {
		for _, p := range paths {
			rp := RIBPath{Peer: p.PeerID, Valid: p.Valid, Best: p.Best, Stale: p.Stale}
			if len(p.Nexthops) > 0 {
				rp.NextHop = p.Nexthops[0].IP
			}
			out[prefix] = append(out[prefix], rp)
		}
	}
	return out, nil
}

// OwnRoutes is the set of destinations podroute installed in node's
// kernel (blackholes for its own CIDRs left out), all families.
func (l *Lab) OwnRoutes(node string) (map[string]bool, error) {
	if l.ns[node] == nil {
		return nil, fmt.Errorf("no node %s", node)
	}
	return l.ownRoutes(node)
}
