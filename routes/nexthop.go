package routes

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// Next-hop sanity. A learned route is only as trustworthy as the peer that
// sent it, and some next hops no peer may set: one of this node's own
// addresses (RFC 4271 §6.3 says to ignore such a route; installed, it loops
// or black-holes), or an address inside this node's own pod CIDRs (that
// would steer traffic for another node's pods into a pod on this node).
// Such next hops are dropped; a route left with none is refused. Both are
// reported with the reason (Snapshot, `podroute routes`).
//
// Next hops the kernel cannot use (off-link, loopback, behind another
// learned route) the kernel itself refuses; those land in errs.

// loadLocalAddrs reads every address configured in the namespace.
func loadLocalAddrs(h *netlink.Handle) (map[netip.Addr]struct{}, error) {
	list, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the node's addresses: %w", err)
	}
	out := make(map[netip.Addr]struct{}, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = struct{}{}
		}
	}
	return out, nil
}

// onAddrEvent keeps the set of local addresses current.
func (r *Reconciler) onAddrEvent(u netlink.AddrUpdate) {
	ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u.NewAddr {
		r.local[ip.Unmap()] = struct{}{}
	} else {
		delete(r.local, ip.Unmap())
	}
}

// saneNextHops returns rt without the next hops that no peer may set, and
// why each dropped one was dropped. r.mu must be held.
func (r *Reconciler) saneNextHopsLocked(rt Route) (Route, string) {
	// The common case, checked without allocating: every hop is fine.
	ok := true
	for _, nh := range rt.NextHops {
		if r.insaneLocked(nh) != "" {
			ok = false
			break
		}
	}
	if ok {
		return rt, ""
	}
	var why []string
	kept := rt.NextHops[:0:0]
	for _, nh := range rt.NextHops {
		if reason := r.insaneLocked(nh); reason != "" {
			why = append(why, reason)
			continue
		}
		kept = append(kept, nh)
	}
	if len(why) == 0 {
		return rt, ""
	}
	rt.NextHops = kept
	return rt, strings.Join(why, "; ")
}

func (r *Reconciler) insaneLocked(nh netip.Addr) string {
	if _, own := r.local[nh]; own {
		return fmt.Sprintf("next hop %s is this node's own address", nh)
	}
	for p := range r.own {
		if p.Contains(nh) {
			return fmt.Sprintf("next hop %s is inside this node's own pod CIDR %s", nh, p)
		}
	}
	return ""
}
