package containerlab

// containerlab: the same Plan the namespace lab builds, written out as a
// containerlab topology (NAME.clab.yml) plus the files its containers bind,
// for people who have Docker or podman rather than root on a Linux machine.
// Because both come from NewPlan, the two labs have the same names,
// interfaces, addresses, ASNs, FRR configurations and podrouted
// configurations. What differs, and why:
//
//   - Every element is a containerlab `kind: linux` container instead of a
//     network namespace: routers run an FRR image (its own entrypoint starts
//     zebra and bgpd from the bound daemons file and frr.conf), nodes run a
//     podrouted image, pods and LAN switches a small tools image.
//   - A container's eth0 is containerlab's management interface (and the
//     name is refused for links), so a pod's interface is eth1
//     (PodIf), not eth0. Pods also keep the management default route
//     and reach the pod pools through the node instead of through a default
//     route.
//   - Interfaces, bridges, addresses, routes and sysctls are set by each
//     container's `exec:` commands, which containerlab runs once the
//     container's links are attached. The veths exist before those commands
//     run, so the per-interface sysctls the namespace lab gets by setting
//     "default" first are set per interface here.
//   - podrouted starts only once its node's exec commands have finished
//     (start-podrouted.sh waits for the file they create last), and the
//     script restarts it when it exits, so killing podrouted (a crash, an
//     upgrade) keeps the container and its links.
//   - containerlab's links default to MTU 9500; every link here says 1500,
//     like the namespace lab's veths.
//
// The output is deterministic (plan order, fixed key order, no timestamps)
// so that it can be committed and compared: this directory holds the
// files for the built-in topologies and a test checks they are current.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// Defaults of Options.
const (
	DefaultFRRImage       = "quay.io/frrouting/frr:8.4.1"
	DefaultPodroutedImage = "ghcr.io/podroute/podrouted:dev"
	DefaultPodImage       = "alpine:3.20"
)

const (
	// PodIf is a pod's interface in containerlab; eth0 is the
	// management interface there.
	PodIf = "eth1"
	// LinkMTU is the MTU of every link, as in the namespace lab.
	LinkMTU = 1500

	clabConfDir      = "/etc/podroute"
	clabStartScript  = "start-podrouted.sh"
	clabReadyFile    = "/run/podroute/network-ready"
	clabPodGateway4  = "169.254.1.1"
	clabPodGateway6  = "fe80::1"
	clabGeneratedBy  = "podroute-lab clab"
	clabRegenerateAt = "go run ./cmd/podroute-lab clab --topology "
)

// Options chooses the container images. Empty fields take the
// defaults above.
type Options struct {
	// FRRImage runs the routers; any FRR 8 or later image whose entrypoint
	// starts FRR from /etc/frr/daemons and /etc/frr/frr.conf.
	FRRImage string
	// PodroutedImage runs the nodes: podrouted and podroute on the PATH,
	// plus a POSIX sh, iproute2 and sysctl (testbed/containerlab/Dockerfile).
	PodroutedImage string
	// PodImage runs pods and LAN switches: sh, ip (iproute2 or busybox)
	// and sysctl.
	PodImage string
}

func (o *Options) defaults() {
	if o.FRRImage == "" {
		o.FRRImage = DefaultFRRImage
	}
	if o.PodroutedImage == "" {
		o.PodroutedImage = DefaultPodroutedImage
	}
	if o.PodImage == "" {
		o.PodImage = DefaultPodImage
	}
}

// TopologyFile is the name of topology name's containerlab file.
func TopologyFile(name string) string { return name + ".clab.yml" }

// Files renders p as containerlab files: path (relative to the
// directory that holds NAME.clab.yml, with '/' separators) -> content.
//
//	NAME.clab.yml                  the topology
//	NAME/start-podrouted.sh        every node's entrypoint
//	NAME/ROUTER/frr.conf           frr.Config of the router, unchanged
//	NAME/ROUTER/daemons            FRR's daemons file: bgpd on
//	NAME/NODE/podrouted.yaml       the node's podrouted configuration
func Files(p *topology.Plan, opts Options) (map[string][]byte, error) {
	opts.defaults()
	t := p.Topology
	if err := checkClabPlan(p); err != nil {
		return nil, fmt.Errorf("containerlab %s: %w", t.Name, err)
	}
	files := map[string][]byte{}
	files[t.Name+"/"+clabStartScript] = []byte(clabStartScriptText(t.Name))
	for _, r := range p.Routers {
		files[t.Name+"/"+r.Name+"/frr.conf"] = []byte(frr.Config(r.Spec))
		files[t.Name+"/"+r.Name+"/daemons"] = []byte(clabFRRDaemons(t.Name, r.Name))
	}
	for _, n := range p.Nodes {
		data, err := yaml.Marshal(n.Config)
		if err != nil {
			return nil, fmt.Errorf("containerlab %s: node %s config: %w", t.Name, n.Name, err)
		}
		head := fmt.Sprintf("# podrouted configuration of node %s in topology %s.\n%s", n.Name, t.Name, clabDoNotEdit(t.Name))
		files[t.Name+"/"+n.Name+"/podrouted.yaml"] = append([]byte(head), data...)
	}
	files[TopologyFile(t.Name)] = clabTopology(p, opts)
	return files, nil
}

func clabDoNotEdit(name string) string {
	return fmt.Sprintf("# Generated by %s from the lab's topology model; do not edit.\n# Regenerate: %s%s\n", clabGeneratedBy, clabRegenerateAt, name)
}

// checkClabPlan rejects what containerlab would: a link on eth0, a name
// used twice, an interface used twice on one element.
func checkClabPlan(p *topology.Plan) error {
	seen := map[string]bool{}
	for _, n := range clabElements(p) {
		if seen[n] {
			return fmt.Errorf("element name %q is used twice (pods are named NODE-pJ)", n)
		}
		seen[n] = true
	}
	ifs := map[string]bool{}
	for _, e := range clabLinkEnds(p) {
		for _, end := range e {
			elem, ifc, _ := strings.Cut(end, ":")
			if ifc == "eth0" {
				return fmt.Errorf("%s: eth0 is containerlab's management interface", end)
			}
			if !seen[elem] {
				return fmt.Errorf("link end %s: no such element", end)
			}
			if ifs[end] {
				return fmt.Errorf("interface %s is used by two links", end)
			}
			ifs[end] = true
		}
	}
	return nil
}

// clabElements lists every container in topology order: routers,
// switches, nodes, then each node's pods.
func clabElements(p *topology.Plan) []string {
	var out []string
	for _, r := range p.Routers {
		out = append(out, r.Name)
	}
	out = append(out, p.Switches...)
	for _, n := range p.Nodes {
		out = append(out, n.Name)
	}
	for _, n := range p.Nodes {
		for _, pod := range n.PodPlans {
			out = append(out, pod.Name)
		}
	}
	return out
}

// clabLinkEnds lists every link as its two "element:interface" ends: the
// plan's wires, then the pod veths.
func clabLinkEnds(p *topology.Plan) [][2]string {
	var out [][2]string
	for _, w := range p.Wires {
		out = append(out, [2]string{w.A + ":" + w.AIf, w.B + ":" + w.BIf})
	}
	for _, n := range p.Nodes {
		for _, pod := range n.PodPlans {
			out = append(out, [2]string{n.Name + ":" + pod.HostIf, pod.Name + ":" + PodIf})
		}
	}
	return out
}

// clabNode is one entry of topology.nodes, in the order it is written.
type clabNode struct {
	name       string
	comment    string
	image      string
	group      string
	entrypoint string
	binds      []string
	exec       []string
}

func clabTopology(p *topology.Plan, opts Options) []byte {
	t := p.Topology
	var nodes []clabNode
	for _, r := range p.Routers {
		dir := t.Name + "/" + r.Name
		role := r.Role
		if role == "" {
			role = "router"
		}
		nodes = append(nodes, clabNode{
			name:    r.Name,
			comment: fmt.Sprintf("FRR router (%s), AS %d, router-id %s", role, r.ASN, r.RouterID),
			image:   opts.FRRImage,
			group:   role,
			binds: []string{
				dir + "/daemons:/etc/frr/daemons:ro",
				dir + "/frr.conf:/etc/frr/frr.conf:ro",
			},
			exec: clabRouterExec(p, r),
		})
	}
	for _, s := range p.Switches {
		nodes = append(nodes, clabNode{
			name:    s,
			comment: "LAN switch: only a bridge (a LAN without a gateway router)",
			image:   opts.PodImage,
			group:   "switch",
			exec:    clabBridgeExec(p, s),
		})
	}
	for _, n := range p.Nodes {
		dir := t.Name + "/" + n.Name
		group := n.Rack
		if group == "" {
			group = "nodes"
		}
		nodes = append(nodes, clabNode{
			name:       n.Name,
			comment:    fmt.Sprintf("podrouted node, AS %d, pod CIDRs %s", n.ASN, joinPrefixes(n.PodCIDRs)),
			image:      opts.PodroutedImage,
			group:      group,
			entrypoint: "sh " + clabConfDir + "/start.sh",
			binds: []string{
				dir + "/podrouted.yaml:" + clabConfDir + "/podrouted.yaml:ro",
				t.Name + "/" + clabStartScript + ":" + clabConfDir + "/start.sh:ro",
			},
			exec: clabNodeExec(p, n),
		})
	}
	for _, n := range p.Nodes {
		for _, pod := range n.PodPlans {
			nodes = append(nodes, clabNode{
				name:    pod.Name,
				comment: fmt.Sprintf("pod on %s: %s", n.Name, joinAddrs(pod.Addrs)),
				image:   opts.PodImage,
				group:   "pods",
				exec:    clabPodExec(p, pod),
			})
		}
	}

	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat(" ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "# containerlab topology %q: the podroute lab's %s topology.\n", t.Name, t.Name)
	if t.Description != "" {
		fmt.Fprintf(&b, "# %s\n", t.Description)
	}
	b.WriteString(clabDoNotEdit(t.Name))
	fmt.Fprintf(&b, "# Deploy (images and details: README.md): sudo containerlab deploy -t %s\n", TopologyFile(t.Name))
	w(0, "name: %s", clabScalar(t.Name))
	w(0, "")
	w(0, "topology:")
	w(2, "nodes:")
	for i, n := range nodes {
		if i > 0 {
			w(0, "")
		}
		w(4, "# %s", n.comment)
		w(4, "%s:", clabScalar(n.name))
		w(6, "kind: linux")
		w(6, "image: %s", clabScalar(n.image))
		w(6, "group: %s", clabScalar(n.group))
		if n.entrypoint != "" {
			w(6, "entrypoint: %s", clabScalar(n.entrypoint))
		}
		if len(n.binds) > 0 {
			w(6, "binds:")
			for _, s := range n.binds {
				w(8, "- %s", clabScalar(s))
			}
		}
		if len(n.exec) > 0 {
			w(6, "exec:")
			for _, s := range n.exec {
				w(8, "- %s", clabScalar(s))
			}
		}
	}
	w(0, "")
	w(2, "links:")
	for _, l := range clabLinkEnds(p) {
		w(4, "- endpoints: [%s, %s]", clabQuote(l[0]), clabQuote(l[1]))
		w(6, "mtu: %d", LinkMTU)
	}
	return []byte(b.String())
}

// clabSysctls are the sysctls every router and node gets: the namespace
// lab's netns.RouterSysctls, and for IPv6 topologies IPv6 switched on (Docker
// turns it off in containers of networks without IPv6).
func clabSysctls(p *topology.Plan, elem string) []string {
	var out []string
	if p.Topology.IPv6 {
		out = append(out,
			"sysctl -w net.ipv6.conf.all.disable_ipv6=0",
			"sysctl -w net.ipv6.conf.default.disable_ipv6=0")
	}
	for _, s := range netns.RouterSysctls {
		out = append(out, fmt.Sprintf("sysctl -w %s=%s", s.Key, s.Value))
	}
	// The link interfaces exist before these commands run, so they did not
	// inherit the "default" values above: set them one by one.
	out = append(out, clabIfSysctls(p, clabWiredIfs(p, elem))...)
	return out
}

func clabIfSysctls(p *topology.Plan, ifs []string) []string {
	var out []string
	for _, ifc := range ifs {
		out = append(out, fmt.Sprintf("sysctl -w net.ipv4.conf.%s.rp_filter=0", ifc))
		if p.Topology.IPv6 {
			out = append(out, fmt.Sprintf("sysctl -w net.ipv6.conf.%s.accept_dad=0", ifc))
		}
	}
	return out
}

// clabWiredIfs lists elem's link interfaces in link order.
func clabWiredIfs(p *topology.Plan, elem string) []string {
	var out []string
	for _, l := range clabLinkEnds(p) {
		for _, end := range l {
			if e, ifc, _ := strings.Cut(end, ":"); e == elem {
				out = append(out, ifc)
			}
		}
	}
	return out
}

func clabRouterExec(p *topology.Plan, r *topology.RouterPlan) []string {
	out := clabSysctls(p, r.Name)
	out = append(out, clabBridgeExec(p, r.Name)...)
	for _, ifc := range r.Ifaces {
		if p.IsBridge(r.Name, ifc.Name) {
			continue // its addresses are on the bridge, set above
		}
		out = append(out, clabIfaceExec(ifc)...)
	}
	return out
}

// clabBridgeExec creates the LAN bridges inside elem, as Lab.wire does.
func clabBridgeExec(p *topology.Plan, elem string) []string {
	var out []string
	for _, br := range p.Bridges {
		if br.In != elem {
			continue
		}
		out = append(out, "ip link add "+br.Name+" type bridge", "ip link set "+br.Name+" up")
		for _, a := range br.Addrs {
			out = append(out, "ip addr add "+a.String()+" dev "+br.Name)
		}
		for _, port := range br.Ports {
			out = append(out, "ip link set "+port+" master "+br.Name, "ip link set "+port+" up")
		}
	}
	return out
}

func clabIfaceExec(ifc topology.Iface) []string {
	out := []string{"ip link set " + ifc.Name + " up"}
	for _, a := range ifc.Addrs {
		out = append(out, "ip addr add "+a.String()+" dev "+ifc.Name)
	}
	return out
}

// clabNodeExec sets the node's addresses and its side of each pod veth
// (as Lab.addPod does), then releases start-podrouted.sh.
func clabNodeExec(p *topology.Plan, n *topology.NodePlan) []string {
	out := clabSysctls(p, n.Name)
	for _, ifc := range n.Ifaces {
		out = append(out, clabIfaceExec(ifc)...)
	}
	for _, pod := range n.PodPlans {
		out = append(out,
			"ip link set "+pod.HostIf+" up",
			"ip addr add "+clabPodGateway4+"/32 dev "+pod.HostIf)
		if p.Topology.IPv6 {
			out = append(out, "ip addr add "+clabPodGateway6+"/64 dev "+pod.HostIf)
		}
		for _, a := range pod.Addrs {
			out = append(out, "ip route add "+hostPrefix(a).String()+" dev "+pod.HostIf)
		}
	}
	return append(out, "touch "+clabReadyFile)
}

// clabPodExec gives the pod its addresses and routes to the pod pools
// through link-local gateways on the node's side, as Lab.addPod does.
func clabPodExec(p *topology.Plan, pod topology.PodPlan) []string {
	t := p.Topology
	var out []string
	if t.IPv6 {
		out = append(out,
			"sysctl -w net.ipv6.conf.all.disable_ipv6=0",
			"sysctl -w net.ipv6.conf."+PodIf+".accept_dad=0")
	}
	out = append(out, "ip link set "+PodIf+" up")
	for _, a := range pod.Addrs {
		out = append(out, "ip addr add "+hostPrefix(a).String()+" dev "+PodIf)
	}
	out = append(out,
		"ip route add "+clabPodGateway4+" dev "+PodIf+" scope link",
		"ip route add "+t.PodPool4+" via "+clabPodGateway4+" dev "+PodIf)
	if t.IPv6 {
		out = append(out, "ip -6 route add "+t.PodPool6+" via "+clabPodGateway6+" dev "+PodIf)
	}
	return out
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// clabFRRDaemons is FRR's daemons file (FRR 8 format): zebra (always
// started) and bgpd, vty on localhost only, and zebra's large netlink
// buffer as in the namespace lab.
func clabFRRDaemons(topo, router string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# FRR daemons file of router %s in topology %s.\n", router, topo)
	b.WriteString(clabDoNotEdit(topo))
	b.WriteString("# zebra, staticd and watchfrr always run; the lab needs bgpd only.\n")
	b.WriteString("bgpd=yes\n")
	for _, d := range []string{"ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd",
		"nhrpd", "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd"} {
		fmt.Fprintf(&b, "%s=no\n", d)
	}
	b.WriteString("\nvtysh_enable=yes\n")
	fmt.Fprintf(&b, "zebra_options=\"  -A 127.0.0.1 -s %s\"\n", frr.ZebraNetlinkBuffer)
	b.WriteString("bgpd_options=\"   -A 127.0.0.1\"\n")
	b.WriteString("staticd_options=\"-A 127.0.0.1\"\n")
	return b.String()
}

// clabStartScriptText is every node's entrypoint. It is POSIX sh so that
// any image with podrouted on the PATH can run it.
func clabStartScriptText(topo string) string {
	return `#!/bin/sh
# Entrypoint of every podrouted node in containerlab topology ` + topo + `.
` + clabDoNotEdit(topo) + `#
# containerlab starts the container, attaches its links, then runs the node's
# exec: commands (sysctls, addresses, pod routes); the last of them creates
# READY. podrouted starts only then, so it never sees a half-built node. When
# podrouted exits it is started again: killing it (a crash, an upgrade) keeps
# the container, and with it the links and addresses. SIGTERM (docker stop,
# containerlab destroy) stops podrouted and the script.
set -u
READY=` + clabReadyFile + `
CONFIG=` + clabConfDir + `/podrouted.yaml

stop=0
pid=
# As PID 1 the shell ignores SIGTERM unless it traps it.
trap 'stop=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT

mkdir -p "$(dirname "$READY")"
waited=0
until [ -e "$READY" ] || [ "$stop" -ne 0 ]; do
	sleep 1
	waited=$((waited + 1))
	if [ $((waited % 30)) -eq 0 ]; then
		echo "start-podrouted: still waiting for containerlab's exec commands to create $READY" >&2
	fi
done

while [ "$stop" -eq 0 ]; do
	podrouted --config "$CONFIG" &
	pid=$!
	wait "$pid"
	status=$?
	if [ "$stop" -ne 0 ]; then
		wait "$pid" 2>/dev/null
		break
	fi
	echo "start-podrouted: podrouted exited with status $status; starting it again in 1s" >&2
	sleep 1
done
`
}

// clabPlain matches strings that YAML reads back unchanged without quotes
// (in block context), given that they contain no ": " either.
var clabPlain = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./:=+ -]*[A-Za-z0-9_./=+-]$|^[A-Za-z_]$`)

// clabScalar writes s as a YAML scalar: plain when that is unambiguous,
// double-quoted otherwise.
func clabScalar(s string) string {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return clabQuote(s)
	}
	if !clabPlain.MatchString(s) || strings.Contains(s, ": ") || !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		return clabQuote(s)
	}
	return s
}

// clabQuote double-quotes s; a JSON string is a valid YAML double-quoted
// scalar.
func clabQuote(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Diff is one generated file that is not as it should be on disk.
type Diff struct {
	Path    string // relative to the output directory, '/' separators
	Problem string // "missing", "not generated", or where the content differs
}

func (d Diff) String() string { return d.Path + ": " + d.Problem }

// clabOwned reports whether rel (relative to the output directory, '/'
// separators) belongs to topology name's generated files: its .clab.yml or
// anything below NAME/.
func clabOwned(name, rel string) bool {
	return rel == TopologyFile(name) || strings.HasPrefix(rel, name+"/")
}

// Compare compares the files of topology name under dir with
// want (from Files): files that differ or are missing, and
// files under dir/NAME/ that the generator no longer makes. Sorted by path.
func Compare(dir, name string, want map[string][]byte) ([]Diff, error) {
	var diffs []Diff
	for _, rel := range slices.Sorted(maps.Keys(want)) {
		have, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			diffs = append(diffs, Diff{rel, "missing"})
		case err != nil:
			return nil, err
		case !bytes.Equal(have, want[rel]):
			diffs = append(diffs, Diff{rel, firstDifference(have, want[rel])})
		}
	}
	extra, err := clabExtraFiles(dir, name, want)
	if err != nil {
		return nil, err
	}
	for _, rel := range extra {
		diffs = append(diffs, Diff{rel, "not generated (left over from an older topology)"})
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Path < diffs[j].Path })
	return diffs, nil
}

// clabExtraFiles lists files under dir/NAME/ that are not in want.
func clabExtraFiles(dir, name string, want map[string][]byte) ([]string, error) {
	var extra []string
	root := filepath.Join(dir, name)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return fs.SkipAll
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); want[rel] == nil {
			extra = append(extra, rel)
		}
		return nil
	})
	return extra, err
}

// firstDifference describes where have departs from want.
func firstDifference(have, want []byte) string {
	h := strings.SplitAfter(string(have), "\n")
	w := strings.SplitAfter(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return fmt.Sprintf("differs from line %d: have %q, want %q (%d vs %d lines)",
				i+1, strings.TrimSuffix(hl, "\n"), strings.TrimSuffix(wl, "\n"), len(h), len(w))
		}
	}
	return "differs"
}

// Write writes files (from Files for topology name)
// under dir, creating directories, and removes files under dir/NAME/ that
// the generator no longer makes. It returns the paths it wrote (only those
// whose content changed) and removed.
func Write(dir, name string, files map[string][]byte) (written, removed []string, err error) {
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		if !clabOwned(name, rel) {
			return written, removed, fmt.Errorf("containerlab %s: refusing to write %s outside the topology's files", name, rel)
		}
		path := filepath.Join(dir, filepath.FromSlash(rel))
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, files[rel]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return written, removed, err
		}
		if err := os.WriteFile(path, files[rel], clabFileMode(rel)); err != nil {
			return written, removed, err
		}
		// WriteFile keeps the mode of an existing file.
		if err := os.Chmod(path, clabFileMode(rel)); err != nil {
			return written, removed, err
		}
		written = append(written, rel)
	}
	extra, err := clabExtraFiles(dir, name, files)
	if err != nil {
		return written, removed, err
	}
	for _, rel := range extra {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			return written, removed, err
		}
		removed = append(removed, rel)
	}
	return written, removed, removeEmptyDirs(filepath.Join(dir, name))
}

// clabFileMode: the start script is executable; everything must be
// readable by the containers' users (FRR runs as user frr).
func clabFileMode(rel string) fs.FileMode {
	if strings.HasSuffix(rel, ".sh") {
		return 0o755
	}
	return 0o644
}

// removeEmptyDirs removes empty directories below root (not root).
func removeEmptyDirs(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- { // deepest first
		if entries, err := os.ReadDir(dirs[i]); err == nil && len(entries) == 0 {
			if err := os.Remove(dirs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
