package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/policy"
)

// State is a whole table as podroute writes it: what a Result renders to,
// and what was last written (or read back from the kernel).
type State struct {
	Chains map[string]*Chain
	Sets   map[string]*Set // sets and maps
}

// Chain is one chain and its rules.
type Chain struct {
	Name string
	// Hook is set for the base chains: "forward".
	Hook, Priority string
	Rules          []string
	// Label names what the chain is for (a pod, a policy), for people
	// reading `nft list`.
	Label string
	// Digest sums Hook, Priority and Rules; it travels in every rule's
	// comment, so a restart can tell an up-to-date chain without parsing
	// rules back.
	Digest string
}

// Set is a set or (with Map) a verdict map.
type Set struct {
	Name     string
	Map      bool
	Type     string
	Interval bool
	Label    string
	// Elems maps each element's canonical key (a prefix, "addr . proto .
	// port", an address) to its value (a verdict for maps, "" for sets).
	Elems map[string]string
	// unsure: read back from the kernel, whose listing may spell elements
	// differently from how they were written; on a difference the set is
	// flushed and refilled instead of diffed element by element.
	unsure bool
}

// Counts are the sizes of a State, for metrics and status.
type Counts struct {
	Chains, Rules, Sets, Elements int
}

// Counts returns the sizes of s.
func (s *State) Counts() Counts {
	var c Counts
	c.Chains = len(s.Chains)
	for _, ch := range s.Chains {
		c.Rules += len(ch.Rules)
	}
	c.Sets = len(s.Sets)
	for _, st := range s.Sets {
		c.Elements += len(st.Elems)
	}
	return c
}

// Names of the fixed objects.
const (
	chainEgress  = "egress"
	chainIngress = "ingress"
)

func mapName(d policy.Direction, fam int) string { return fmt.Sprintf("%s%d", d, fam) }

// hashName is a short, stable name for a namespaced object: chain and set
// names have a length limit and a character set that Kubernetes names do
// not respect, and 40 bits make a collision between two pods or policies
// of one node practically impossible.
func hashName(k policy.Key) string {
	sum := sha256.Sum256([]byte(k.Namespace + "/" + k.Name))
	return hex.EncodeToString(sum[:5])
}

// PodChain and PolicyChain name the chains for a pod and a policy.
func PodChain(k policy.Key, d policy.Direction) string {
	return "pod-" + hashName(k) + "-" + dirSuffix(d)
}

func PolicyChain(k policy.Key, d policy.Direction) string {
	return "pol-" + hashName(k) + "-" + dirSuffix(d)
}

func dirSuffix(d policy.Direction) string {
	if d == policy.Egress {
		return "out"
	}
	return "in"
}

// peerSet names the set of a rule's peers: by the peer definition, so
// that every rule with the same peers shares it (a pod coming or going
// then changes one set, not one per policy).
func peerSet(r policy.Rule, fam int) string {
	return fmt.Sprintf("peer-%s-%d", hashString(r.PeerID), fam)
}

// namedSet names the set of a rule's resolved named ports: shared like
// peer sets for egress (NamedID), one per policy rule for ingress (it holds
// the policy's own pods).
func namedSet(k policy.Key, d policy.Direction, rule int, r policy.Rule, fam int) string {
	if r.NamedID != "" {
		return fmt.Sprintf("named-%s-%d", hashString(r.NamedID), fam)
	}
	return fmt.Sprintf("pol-%s-%s%d-n%d", hashName(k), dirSuffix(d), rule, fam)
}

func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:5])
}

var directions = []policy.Direction{policy.Ingress, policy.Egress}

// Render returns the table that enforces res.
func Render(res *policy.Result) *State {
	s := &State{Chains: map[string]*Chain{}, Sets: map[string]*Set{}}
	for _, d := range directions {
		for _, fam := range []int{4, 6} {
			s.addSet(&Set{Name: mapName(d, fam), Map: true, Type: addrType(fam) + " : verdict",
				Label: fmt.Sprintf("local pods isolated for %s: IPv%d address to their chain", d, fam)})
		}
	}
	s.addChain(&Chain{Name: chainEgress, Hook: "forward", Priority: "filter", Label: "egress of local pods",
		Rules: []string{
			// Rules are keyed by address, so a pod must not send with
			// another's: a packet from a pod's veth whose source is not
			// routed back through that veth is dropped (strict reverse
			// path, both families; IPv6 has no rp_filter sysctl). First,
			// before conntrack could match a spoofed reply.
			`iifname "` + cni.HostVethPrefix + `*" fib saddr . iif oif missing drop`,
			"ct state established,related accept",
			"ip saddr vmap @" + mapName(policy.Egress, 4),
			"ip6 saddr vmap @" + mapName(policy.Egress, 6),
		}})
	s.addChain(&Chain{Name: chainIngress, Hook: "forward", Priority: "filter + 1", Label: "ingress of local pods",
		Rules: []string{
			"ct state established,related accept",
			"ip daddr vmap @" + mapName(policy.Ingress, 4),
			"ip6 daddr vmap @" + mapName(policy.Ingress, 6),
		}})

	for _, c := range res.Policies {
		for _, d := range directions {
			if c.Applies(d) {
				s.renderPolicy(c, d)
			}
		}
	}
	// In key order, so that if two pods ever claim one address (a stale
	// object), the same one wins every time and Syncs do not flap.
	podKeys := make([]policy.Key, 0, len(res.Pods))
	for k := range res.Pods {
		podKeys = append(podKeys, k)
	}
	sort.Slice(podKeys, func(i, j int) bool { return podKeys[i].String() < podKeys[j].String() })
	for _, pk := range podKeys {
		lp := res.Pods[pk]
		for _, d := range directions {
			pols := lp.Ingress
			if d == policy.Egress {
				pols = lp.Egress
			}
			if len(pols) == 0 {
				continue
			}
			name := PodChain(lp.Key, d)
			ch := &Chain{Name: name, Label: lp.Key.String() + " " + d.String()}
			for _, pk := range pols {
				ch.Rules = append(ch.Rules, "jump "+PolicyChain(pk, d))
			}
			ch.Rules = append(ch.Rules, "drop")
			s.addChain(ch)
			for _, a := range lp.Addrs {
				fam := 4
				if a.Is6() {
					fam = 6
				}
				s.Sets[mapName(d, fam)].Elems[a.String()] = "goto " + name
			}
		}
	}
	return s
}

func addrType(fam int) string {
	if fam == 4 {
		return "ipv4_addr"
	}
	return "ipv6_addr"
}

func addrMatch(fam int, d policy.Direction, peer bool) string {
	ip := "ip"
	if fam == 6 {
		ip = "ip6"
	}
	// The peer is the source of ingress and the destination of egress.
	if (d == policy.Ingress) == peer {
		return ip + " saddr"
	}
	return ip + " daddr"
}

// renderPolicy writes one direction of a policy: its chain and sets.
func (s *State) renderPolicy(c *policy.Compiled, d policy.Direction) {
	ch := &Chain{Name: PolicyChain(c.Key, d), Label: "policy " + c.Key.String() + " " + d.String()}
	for i, r := range c.Rules(d) {
		// peerMatch[fam] is what restricts the peer ("" for any peer).
		peerMatch := map[int]string{4: "", 6: ""}
		if !r.AnyPeer {
			for _, fam := range []int{4, 6} {
				name := peerSet(r, fam)
				peerMatch[fam] = addrMatch(fam, d, true) + " @" + name + " "
				if s.Sets[name] != nil {
					continue // shared with a rule rendered before
				}
				set := &Set{Name: name, Type: addrType(fam), Interval: true,
					Label: truncate(r.PeerID, 120), Elems: map[string]string{}}
				for _, k := range rangeKeys(r.Peers, fam) {
					set.Elems[k] = ""
				}
				s.addSet(set)
			}
		}
		fams := []int{4, 6}
		if r.AnyPeer {
			fams = []int{4} // one family-less rule does for both
		}
		for _, fam := range fams {
			if r.AnyPort {
				ch.Rules = append(ch.Rules, peerMatch[fam]+"accept")
				continue
			}
			for _, m := range portMatches(r.Ports) {
				ch.Rules = append(ch.Rules, peerMatch[fam]+m+" accept")
			}
		}
		if !r.HasNamed {
			continue
		}
		for _, fam := range []int{4, 6} {
			name := namedSet(c.Key, d, i, r, fam)
			if s.Sets[name] == nil {
				label := r.NamedID
				if label == "" {
					label = fmt.Sprintf("named ports of %s %s[%d]", c.Key, d, i)
				}
				set := &Set{Name: name, Type: addrType(fam) + " . inet_proto . inet_service",
					Label: truncate(label, 120), Elems: map[string]string{}}
				for _, n := range r.Named {
					if (fam == 4) == n.Addr.Is4() {
						set.Elems[namedKey(n)] = ""
					}
				}
				s.addSet(set)
			}
			// Ingress entries are per destination (the local pod), so the
			// peer is still checked; egress entries are per peer pod.
			pm := ""
			if d == policy.Ingress {
				pm = peerMatch[fam]
			}
			ip := "ip"
			if fam == 6 {
				ip = "ip6"
			}
			// Named ports are always the destination's.
			ch.Rules = append(ch.Rules, pm+ip+" daddr . meta l4proto . th dport @"+name+" accept")
		}
	}
	s.addChain(ch)
}

// rangeKeys spells the peers of one family as interval set elements: the
// canonical prefixes, adjacent ones joined back into one "lo-hi" range (a
// block minus an except is two ranges, not dozens of prefixes), and a range
// that is exactly one prefix spelled as that prefix, as nft lists it.
func rangeKeys(peers []netip.Prefix, fam int) []string {
	var out []string
	var lo, hi netip.Addr
	flush := func() {
		if !lo.IsValid() {
			return
		}
		out = append(out, rangeKey(lo, hi))
	}
	for _, p := range peers {
		if (fam == 4) != p.Addr().Is4() {
			continue
		}
		first, last := p.Masked().Addr(), lastAddr(p)
		if lo.IsValid() && hi.Next() == first {
			hi = last
			continue
		}
		flush()
		lo, hi = first, last
	}
	flush()
	return out
}

// rangeKey spells lo..hi as a prefix when it is one, else as "lo-hi".
func rangeKey(lo, hi netip.Addr) string {
	for bits := 0; bits <= lo.BitLen(); bits++ {
		p := netip.PrefixFrom(lo, bits)
		if p.Masked().Addr() == lo && lastAddr(p) == hi {
			return p.String()
		}
	}
	return lo.String() + "-" + hi.String()
}

// lastAddr is the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func namedKey(n policy.NamedPort) string {
	return n.Addr.String() + " . " + string(n.Proto) + " . " + strconv.Itoa(int(n.Port))
}

// portMatches renders numeric ports as one match per protocol.
func portMatches(ports []policy.PortRange) []string {
	var out []string
	for _, proto := range policy.Protocols {
		var items []string
		whole := false
		for _, p := range ports {
			if p.Proto != proto {
				continue
			}
			if p.AllPorts() {
				whole = true
				break
			}
			if p.First == p.Last {
				items = append(items, strconv.Itoa(int(p.First)))
			} else {
				items = append(items, fmt.Sprintf("%d-%d", p.First, p.Last))
			}
		}
		switch {
		case whole:
			out = append(out, "meta l4proto "+string(proto))
		case len(items) == 1:
			out = append(out, string(proto)+" dport "+items[0])
		case len(items) > 1:
			out = append(out, string(proto)+" dport { "+strings.Join(items, ", ")+" }")
		}
	}
	return out
}

func (s *State) addChain(c *Chain) {
	c.Digest = digest(c.Hook, c.Priority, c.Rules)
	s.Chains[c.Name] = c
}

func (s *State) addSet(st *Set) {
	if st.Elems == nil {
		st.Elems = map[string]string{}
	}
	s.Sets[st.Name] = st
}

func digest(hook, prio string, rules []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", hook, prio)
	for _, r := range rules {
		fmt.Fprintf(h, "%s\x00", r)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// comment is what every rule of a chain carries: a readable label and
// the digest. nftables limits comments to 128 bytes.
func (c *Chain) comment() string {
	label := c.Label
	if len(label) > 100 {
		label = label[:100]
	}
	return label + " #" + c.Digest
}

// digestFromComment returns the digest a comment() carries, or "".
func digestFromComment(s string) string {
	i := strings.LastIndex(s, " #")
	if i < 0 {
		return ""
	}
	return s[i+2:]
}

// sortedKeys returns m's keys in order, so transactions are reproducible.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
