package policy

import "net/netip"

// Allowed reports whether r lets a new connection through for the local
// pod: in direction Ingress from remote to local on proto/port, in Egress
// from local to remote on proto/port. proto "" stands for a protocol
// without ports (ICMP), which only rules without ports allow.
//
// It is the meaning the kernel side must implement, written once in plain
// Go: the computation's tests ask it, and the namespace tests check that
// the kernel answers the same with real packets.
func (r *Result) Allowed(pod Key, d Direction, local, remote netip.Addr, proto Protocol, port uint16) bool {
	lp := r.Pods[pod]
	if lp == nil {
		return true // not a pod this node polices
	}
	isolating := lp.Ingress
	if d == Egress {
		isolating = lp.Egress
	}
	if len(isolating) == 0 {
		return true
	}
	dst := local
	if d == Egress {
		dst = remote
	}
	for _, pk := range isolating {
		for _, rule := range r.Policies[pk].Rules(d) {
			if rule.allows(d, remote, dst, proto, port) {
				return true
			}
		}
	}
	return false
}

func (rule *Rule) allows(d Direction, remote, dst netip.Addr, proto Protocol, port uint16) bool {
	peer := rule.AnyPeer || prefixesContain(rule.Peers, remote)
	if peer && rule.AnyPort {
		return true
	}
	if proto == "" {
		return false
	}
	if peer {
		for _, pr := range rule.Ports {
			if pr.Proto == proto && pr.First <= port && port <= pr.Last {
				return true
			}
		}
	}
	// Egress named ports are resolved per peer pod, so the entry is the
	// peer check; ingress ones are per destination and need the peer too.
	if d == Ingress && !peer {
		return false
	}
	for _, n := range rule.Named {
		if n.Addr == dst && n.Proto == proto && n.Port == port {
			return true
		}
	}
	return false
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
