package routes

import (
	"context"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// repairDelay gathers a burst of deletions into one repair write.
	repairDelay = 20 * time.Millisecond
	// linkSettle lets a link come fully up (addresses, neighbours) before
	// the full resync it triggers.
	linkSettle = 100 * time.Millisecond
	// resubscribeDelay paces re-subscription after a netlink socket error
	// (typically ENOBUFS when a burst overflowed it).
	resubscribeDelay = 500 * time.Millisecond
	subscribeBuffer  = 8 << 20
)

// loop runs the drift repair: netlink route, link and address events and
// the periodic resync.
func (r *Reconciler) loop(ctx context.Context) {
	defer close(r.done)
	ticker := time.NewTicker(r.cfg.ResyncInterval)
	defer ticker.Stop()

	var settle <-chan time.Time
	for {
		sub, err := r.subscribe(ctx)
		if err != nil {
			r.log.Error("netlink subscribe failed; retrying, periodic resync meanwhile", "err", err)
			// A channel closed after a while ends the event loop below,
			// which then subscribes again.
			closing := make(chan netlink.RouteUpdate)
			sub.routes = closing
			time.AfterFunc(4*resubscribeDelay, func() { close(closing) })
		}
		// Whatever happened while we were not subscribed is caught here.
		r.requestResync()
	events:
		for {
			select {
			case <-ctx.Done():
				sub.close()
				return
			case u, ok := <-sub.routes:
				if !ok {
					break events
				}
				r.onRouteEvent(u)
			case u, ok := <-sub.links:
				if !ok {
					break events
				}
				if u.Header.Type == unix.RTM_NEWLINK || u.Header.Type == unix.RTM_DELLINK {
					settle = time.After(linkSettle)
				}
			case u, ok := <-sub.addrs:
				if !ok {
					break events
				}
				r.onAddrEvent(u)
				settle = time.After(linkSettle)
			case <-settle:
				settle = nil
				r.requestResync()
			case <-r.kick:
				time.Sleep(repairDelay)
				r.repairDeleted()
			case <-r.fullResync:
				if err := r.Resync(); err != nil {
					r.log.Warn("resync failed", "err", err)
				}
			case <-ticker.C:
				if err := r.Resync(); err != nil {
					r.log.Warn("periodic resync failed", "err", err)
				}
			}
		}
		sub.close()
		r.log.Warn("netlink event subscription ended; re-subscribing")
		select {
		case <-ctx.Done():
			return
		case <-time.After(resubscribeDelay):
		}
	}
}

// onRouteEvent notes a deleted route of ours that is still desired. It
// does not take r.mu: during a large write the kernel floods events, and
// blocking here would overflow the subscription socket.
func (r *Reconciler) onRouteEvent(u netlink.RouteUpdate) {
	if u.Type != unix.RTM_DELROUTE || int(u.Protocol) != int(r.cfg.Protocol) || uint32(u.Table) != r.cfg.Table {
		return
	}
	rt, ok := fromNetlink(u.Route)
	if !ok {
		return
	}
	r.repairMu.Lock()
	r.repair[rt.Prefix] = struct{}{}
	r.repairMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// repairDeleted re-installs desired routes whose deletion was seen. Our
// own deletions also produce events; those prefixes are no longer desired
// and are skipped.
func (r *Reconciler) repairDeleted() {
	r.repairMu.Lock()
	pending := r.repair
	r.repair = map[netip.Prefix]struct{}{}
	r.repairMu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []op
	for p := range pending {
		want, ok := r.desired[p]
		if !ok {
			continue
		}
		// The kernel no longer has it (an exclusive create that meets a
		// route of ours after all is resolved in applyLocked).
		delete(r.kernel, p)
		ops = append(ops, op{route: want})
	}
	if len(ops) > 0 {
		r.stats.Repairs += uint64(len(ops))
		r.log.Info("re-installing routes deleted behind our back", "routes", len(ops))
		r.applyLocked(ops)
	}
}

// subscription holds the three event channels; a nil channel never fires.
type subscription struct {
	routes chan netlink.RouteUpdate
	links  chan netlink.LinkUpdate
	addrs  chan netlink.AddrUpdate
	done   chan struct{}
}

func (s *subscription) close() {
	if s != nil && s.done != nil {
		close(s.done)
		s.done = nil
	}
}

func (r *Reconciler) subscribe(ctx context.Context) (*subscription, error) {
	s := &subscription{
		routes: make(chan netlink.RouteUpdate, 4096),
		links:  make(chan netlink.LinkUpdate, 64),
		addrs:  make(chan netlink.AddrUpdate, 64),
		done:   make(chan struct{}),
	}
	onErr := func(err error) {
		// Closing the subscription on shutdown makes its reader fail;
		// that is not worth a warning.
		if ctx.Err() == nil {
			r.log.Warn("netlink event socket error", "err", err)
		}
	}
	ns := r.ns
	var nsp = &ns
	if !ns.IsOpen() {
		nsp = nil
	}
	if err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
		Namespace: nsp, ErrorCallback: onErr, ReceiveBufferSize: subscribeBuffer, ReceiveBufferForceSize: true,
	}); err != nil {
		s.close()
		return &subscription{}, err
	}
	if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
		Namespace: nsp, ErrorCallback: onErr,
	}); err != nil {
		s.close()
		return &subscription{}, err
	}
	if err := netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{
		Namespace: nsp, ErrorCallback: onErr,
	}); err != nil {
		s.close()
		return &subscription{}, err
	}
	return s, nil
}
