package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podInfo is a pod reduced to what selectors and named ports need.
type podInfo struct {
	pod   *corev1.Pod
	key   Key
	addrs []netip.Addr
}

// world indexes the inputs once per Compute.
type world struct {
	node      string
	nsLabels  map[string]labels.Set // namespace -> labels
	nsNames   []string              // sorted, every namespace seen (objects and pods)
	podsInNS  map[string][]*podInfo // peer-eligible pods by namespace, sorted by name
	allPods   []*podInfo            // every peer-eligible pod, sorted
	localPods map[Key]*podInfo
	problems  []Problem

	// Memos: many policies name the same peers (a namespaceSelector
	// team=x, a podSelector app=y in one namespace); each is evaluated once
	// per Compute.
	selMemo   map[string][]*podInfo     // selector peer -> pods
	peerMemo  map[string][]netip.Prefix // Rule.PeerID -> Rule.Peers
	namedMemo map[string][]NamedPort    // Rule.NamedID -> Rule.Named
}

// NamespaceNameLabel is set by the API server on every Namespace; it is
// added here too when an object lacks it, so a namespaceSelector on it works
// even against a Namespace written before the label existed.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Compute returns what this node enforces for in. It is pure: the same
// input gives the same result, and the inputs are not changed.
func Compute(in Input) *Result {
	w := newWorld(in)
	res := &Result{Pods: map[Key]*LocalPod{}, Policies: map[Key]*Compiled{}}
	for k, p := range w.localPods {
		res.Pods[k] = &LocalPod{Key: k, Addrs: p.addrs}
	}
	pols := slices.Clone(in.Policies)
	sort.Slice(pols, func(i, j int) bool {
		if pols[i].Namespace != pols[j].Namespace {
			return pols[i].Namespace < pols[j].Namespace
		}
		return pols[i].Name < pols[j].Name
	})
	for _, np := range pols {
		c := w.compile(np)
		if c == nil {
			continue
		}
		res.Policies[c.Key] = c
		for _, pk := range c.Selects {
			lp := res.Pods[pk]
			if c.HasIngress {
				lp.Ingress = append(lp.Ingress, c.Key)
			}
			if c.HasEgress {
				lp.Egress = append(lp.Egress, c.Key)
			}
		}
	}
	res.Problems = w.problems
	return res
}

func newWorld(in Input) *world {
	w := &world{
		node:      in.NodeName,
		nsLabels:  map[string]labels.Set{},
		podsInNS:  map[string][]*podInfo{},
		localPods: map[Key]*podInfo{},
		selMemo:   map[string][]*podInfo{},
		peerMemo:  map[string][]netip.Prefix{},
		namedMemo: map[string][]NamedPort{},
	}
	for _, ns := range in.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		if _, ok := l[NamespaceNameLabel]; !ok {
			l[NamespaceNameLabel] = ns.Name
		}
		w.nsLabels[ns.Name] = l
	}
	for _, pod := range in.Pods {
		pi := w.podInfo(pod)
		if pi == nil {
			continue
		}
		w.podsInNS[pod.Namespace] = append(w.podsInNS[pod.Namespace], pi)
		w.allPods = append(w.allPods, pi)
		if pod.Spec.NodeName == in.NodeName && in.NodeName != "" {
			w.localPods[pi.key] = pi
		}
		if _, ok := w.nsLabels[pod.Namespace]; !ok {
			// A pod whose Namespace object is not (yet) known: it still
			// has the name label, as every namespace does.
			w.nsLabels[pod.Namespace] = labels.Set{NamespaceNameLabel: pod.Namespace}
		}
	}
	for ns := range w.nsLabels {
		w.nsNames = append(w.nsNames, ns)
	}
	sort.Strings(w.nsNames)
	byKey := func(a, b *podInfo) int { return strings.Compare(a.key.String(), b.key.String()) }
	for _, ps := range w.podsInNS {
		slices.SortFunc(ps, byKey)
	}
	slices.SortFunc(w.allPods, byKey)
	return w
}

// podInfo returns the pod if it can be a peer or a local pod: it has
// addresses, is not on the host network (its address is the node's:
// allowing it would allow the node and all its host-network processes,
// and selecting it would police the node), and has not terminated (a
// terminated pod's address may already belong to a new pod).
func (w *world) podInfo(pod *corev1.Pod) *podInfo {
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	var ips []string
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && pod.Status.PodIP != "" {
		ips = append(ips, pod.Status.PodIP)
	}
	var addrs []netip.Addr
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		addrs = append(addrs, a.Unmap())
	}
	if len(addrs) == 0 {
		return nil
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	return &podInfo{pod: pod, key: Key{pod.Namespace, pod.Name}, addrs: addrs}
}

func (w *world) problem(np *networkingv1.NetworkPolicy, reason, format string, args ...any) {
	w.problems = append(w.problems, Problem{
		Kind: "NetworkPolicy", Object: Key{np.Namespace, np.Name},
		Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}

// policyTypes applies the API's defaulting: Ingress always, Egress when
// the policy has egress rules.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// compile returns np reduced to addresses and numbers, or nil when it
// selects no local pod.
func (w *world) compile(np *networkingv1.NetworkPolicy) *Compiled {
	c := &Compiled{Key: Key{np.Namespace, np.Name}}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	broken := false
	if err != nil {
		// Failing closed: every local pod of the namespace is isolated by
		// this policy, which allows nothing.
		sel, broken = labels.Everything(), true
	}
	for _, pi := range w.podsInNS[np.Namespace] {
		if _, local := w.localPods[pi.key]; local && sel.Matches(labels.Set(pi.pod.Labels)) {
			c.Selects = append(c.Selects, pi.key)
		}
	}
	if len(c.Selects) == 0 {
		return nil
	}
	c.HasIngress, c.HasEgress = policyTypes(np)
	if broken {
		w.problem(np, "InvalidPodSelector", "spec.podSelector: %v; the policy isolates every pod of namespace %s and allows nothing", err, np.Namespace)
		return c
	}
	if c.HasIngress {
		c.Ingress = []Rule{}
		for i, r := range np.Spec.Ingress {
			c.Ingress = append(c.Ingress, w.rule(np, Ingress, i, r.From, r.Ports, c.Selects))
		}
	}
	if c.HasEgress {
		c.Egress = []Rule{}
		for i, r := range np.Spec.Egress {
			c.Egress = append(c.Egress, w.rule(np, Egress, i, r.To, r.Ports, c.Selects))
		}
	}
	return c
}

// namedPort is a port a rule names, before resolution.
type namedPort struct {
	proto Protocol
	name  string
}

func (w *world) rule(np *networkingv1.NetworkPolicy, dir Direction, idx int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, selects []Key) Rule {
	field := fmt.Sprintf("spec.%s[%d]", dir, idx)
	var r Rule
	var names []namedPort
	r.AnyPort = len(ports) == 0
	for i, p := range ports {
		pr, name, ok := w.port(np, fmt.Sprintf("%s.ports[%d]", field, i), p)
		switch {
		case !ok:
		case name != "":
			names = append(names, namedPort{pr.Proto, name})
		default:
			r.Ports = append(r.Ports, pr)
		}
	}
	r.Ports = mergePorts(r.Ports)
	r.HasNamed = len(names) > 0

	// Peers: addresses, and (for egress named ports) the pods behind them.
	r.AnyPeer = len(peers) == 0
	var peerIDs []string
	var peerPods []*podInfo
	var blocks [][]addrRange // per ipBlock peer, for named ports
	peerField := "from"
	if dir == Egress {
		peerField = "to"
	}
	for i, p := range peers {
		pf := fmt.Sprintf("%s.%s[%d]", field, peerField, i)
		if p.IPBlock != nil {
			if p.PodSelector != nil || p.NamespaceSelector != nil {
				w.problem(np, "InvalidPeer", "%s: ipBlock cannot be combined with a selector; this peer matches nothing", pf)
				continue
			}
			br, ok := w.ipBlock(np, pf, p.IPBlock)
			if ok {
				blocks = append(blocks, br)
				peerIDs = append(peerIDs, "block:"+rangesString(br))
			}
			continue
		}
		if p.PodSelector == nil && p.NamespaceSelector == nil {
			w.problem(np, "InvalidPeer", "%s: a peer needs podSelector, namespaceSelector or ipBlock; this peer matches nothing", pf)
			continue
		}
		id, pods, ok := w.selectPeers(np, pf, p)
		if !ok {
			continue
		}
		peerIDs = append(peerIDs, id)
		peerPods = append(peerPods, pods...)
	}
	if !r.AnyPeer {
		// Rules with the same peers, in any policy, share one PeerID and so
		// one kernel set.
		slices.Sort(peerIDs)
		r.PeerID = "peers;" + strings.Join(slices.Compact(peerIDs), ";")
		peers, ok := w.peerMemo[r.PeerID]
		if !ok {
			var ranges []addrRange
			for _, br := range blocks {
				ranges = append(ranges, br...)
			}
			for _, pi := range peerPods {
				for _, a := range pi.addrs {
					ranges = append(ranges, addrRange{a, a})
				}
			}
			peers = canonicalPrefixes(ranges)
			w.peerMemo[r.PeerID] = peers
		}
		r.Peers = peers
	}
	if !r.HasNamed {
		return r
	}
	if dir == Ingress {
		// The destination is the selected local pod: its ports name them.
		for _, k := range selects {
			r.Named = append(r.Named, resolve(w.localPods[k], names, nil)...)
		}
		r.Named = sortNamed(r.Named)
		return r
	}
	// Egress: per peer pod, so the same peers and names give the same set.
	var nameIDs []string
	for _, n := range names {
		nameIDs = append(nameIDs, string(n.proto)+"/"+n.name)
	}
	slices.Sort(nameIDs)
	peerID := r.PeerID
	if r.AnyPeer {
		peerID = "any"
	}
	r.NamedID = "named;" + peerID + ";" + strings.Join(slices.Compact(nameIDs), ",")
	if named, ok := w.namedMemo[r.NamedID]; ok {
		r.Named = named
		return r
	}
	switch {
	case r.AnyPeer:
		for _, pi := range w.allPods {
			r.Named = append(r.Named, resolve(pi, names, nil)...)
		}
	default:
		for _, pi := range peerPods {
			r.Named = append(r.Named, resolve(pi, names, nil)...)
		}
		// An ipBlock peer with a named port: the pods inside the block
		// that have that port, and only their addresses inside.
		for _, br := range blocks {
			for _, pi := range w.allPods {
				r.Named = append(r.Named, resolve(pi, names, br)...)
			}
		}
	}
	r.Named = sortNamed(r.Named)
	w.namedMemo[r.NamedID] = r.Named
	return r
}

// port checks one policy port; it returns a numeric range, or a name.
func (w *world) port(np *networkingv1.NetworkPolicy, field string, p networkingv1.NetworkPolicyPort) (PortRange, string, bool) {
	proto := TCP
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP:
		case corev1.ProtocolUDP:
			proto = UDP
		case corev1.ProtocolSCTP:
			proto = SCTP
		default:
			w.problem(np, "UnsupportedProtocol", "%s: protocol %q is not TCP, UDP or SCTP; this port matches nothing", field, *p.Protocol)
			return PortRange{}, "", false
		}
	}
	if p.Port == nil {
		if p.EndPort != nil {
			w.problem(np, "InvalidPort", "%s: endPort without port; this port matches nothing", field)
			return PortRange{}, "", false
		}
		return PortRange{Proto: proto, First: 0, Last: 65535}, "", true
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil {
			w.problem(np, "InvalidPort", "%s: endPort with the named port %q; this port matches nothing", field, p.Port.StrVal)
			return PortRange{}, "", false
		}
		if p.Port.StrVal == "" {
			w.problem(np, "InvalidPort", "%s: empty port name; this port matches nothing", field)
			return PortRange{}, "", false
		}
		return PortRange{Proto: proto}, p.Port.StrVal, true
	}
	first := p.Port.IntVal
	last := first
	if p.EndPort != nil {
		last = *p.EndPort
	}
	if first < 1 || first > 65535 || last < first || last > 65535 {
		w.problem(np, "InvalidPort", "%s: port %d endPort %d is not a range within 1-65535; this port matches nothing", field, first, last)
		return PortRange{}, "", false
	}
	return PortRange{Proto: proto, First: uint16(first), Last: uint16(last)}, "", true
}

// ipBlock returns the block minus its excepts.
func (w *world) ipBlock(np *networkingv1.NetworkPolicy, field string, b *networkingv1.IPBlock) ([]addrRange, bool) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		w.problem(np, "InvalidIPBlock", "%s.ipBlock.cidr %q: %v; this peer matches nothing", field, b.CIDR, err)
		return nil, false
	}
	rs := []addrRange{prefixRange(unmapPrefix(cidr))}
	for i, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			// An except we cannot read might have cut anything out of the
			// block: drop the whole peer rather than allow too much.
			w.problem(np, "InvalidIPBlock", "%s.ipBlock.except[%d] %q: %v; this peer matches nothing", field, i, e, err)
			return nil, false
		}
		rs = subtract(rs, prefixRange(unmapPrefix(ex)))
	}
	return rs, true
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p
}

// selectPeers returns the pods a selector peer matches, and an ID that is
// the same for every peer that means the same pods.
func (w *world) selectPeers(np *networkingv1.NetworkPolicy, field string, p networkingv1.NetworkPolicyPeer) (string, []*podInfo, bool) {
	podSel := labels.Everything()
	if p.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil {
			w.problem(np, "InvalidPeer", "%s.podSelector: %v; this peer matches nothing", field, err)
			return "", nil, false
		}
		podSel = s
	}
	nsSel := labels.Nothing()
	nsID := "own=" + np.Namespace
	if p.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			w.problem(np, "InvalidPeer", "%s.namespaceSelector: %v; this peer matches nothing", field, err)
			return "", nil, false
		}
		nsSel, nsID = s, "ns="+s.String()
	}
	id := "sel:" + nsID + "|pod=" + podSel.String()
	if pods, ok := w.selMemo[id]; ok {
		return id, pods, true
	}
	namespaces := []string{np.Namespace}
	if p.NamespaceSelector != nil {
		namespaces = nil
		for _, ns := range w.nsNames {
			if nsSel.Matches(w.nsLabels[ns]) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	var out []*podInfo
	for _, ns := range namespaces {
		for _, pi := range w.podsInNS[ns] {
			if podSel.Matches(labels.Set(pi.pod.Labels)) {
				out = append(out, pi)
			}
		}
	}
	w.selMemo[id] = out
	return id, out, true
}

// resolve returns the pod's addresses with the numbers its containers give
// the names; with within, only the addresses inside those ranges.
func resolve(pi *podInfo, names []namedPort, within []addrRange) []NamedPort {
	var out []NamedPort
	for _, a := range pi.addrs {
		if within != nil && !inRanges(a, within) {
			continue
		}
		for _, n := range names {
			for _, port := range containerPorts(pi.pod, n) {
				out = append(out, NamedPort{Addr: a, Proto: n.proto, Port: port})
			}
		}
	}
	return out
}

// containerPorts returns the numbers the pod's containers (and sidecar
// init containers) give the name for the protocol.
func containerPorts(pod *corev1.Pod, n namedPort) []uint16 {
	var out []uint16
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			for _, cp := range c.Ports {
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				if cp.Name == n.name && strings.EqualFold(string(proto), string(n.proto)) && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 {
					out = append(out, uint16(cp.ContainerPort))
				}
			}
		}
	}
	return out
}

func rangesString(rs []addrRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.lo.String() + "-" + r.hi.String()
	}
	return strings.Join(parts, ",")
}

func inRanges(a netip.Addr, rs []addrRange) bool {
	for _, r := range rs {
		if r.lo.Is4() == a.Is4() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0 {
			return true
		}
	}
	return false
}

func sortNamed(ns []NamedPort) []NamedPort {
	slices.SortFunc(ns, func(a, b NamedPort) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Proto), string(b.Proto)); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return slices.Compact(ns)
}

// mergePorts sorts ranges by protocol and start, and merges overlapping or
// adjacent ones, so that the same ports always render the same rule.
func mergePorts(ps []PortRange) []PortRange {
	if len(ps) == 0 {
		return nil
	}
	order := map[Protocol]int{TCP: 0, UDP: 1, SCTP: 2}
	slices.SortFunc(ps, func(a, b PortRange) int {
		if a.Proto != b.Proto {
			return order[a.Proto] - order[b.Proto]
		}
		return int(a.First) - int(b.First)
	})
	out := []PortRange{ps[0]}
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if p.Proto == last.Proto && int(p.First) <= int(last.Last)+1 {
			if p.Last > last.Last {
				last.Last = p.Last
			}
			continue
		}
		out = append(out, p)
	}
	return out
}
