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
	// resubscribeDelay paces re-subscription after a netlink socket error.
	resubscribeDelay = 500 * time.Millisecond
	// deleteWatchBuffer holds the deletion notices of a whole table (say,
	// a peer's 100k routes withdrawn at once, which we delete ourselves)
	// so that the watch rarely overflows; an overflow costs a resync.
	deleteWatchBuffer = 16 << 20
)

// loop runs the drift repair: deletions of our routes (filtered in the
// kernel), link and address events, and the periodic resync.
func (r *Reconciler) loop(ctx context.Context) {
	defer close(r.done)
	ticker := time.NewTicker(r.cfg.ResyncInterval)
	defer ticker.Stop()

	var settle <-chan time.Time
	for {
		sub, err := r.subscribe(ctx)
		if err != nil {
			r.log.Error("netlink subscribe failed; retrying, periodic resync meanwhile", "err", err)
		}
		// Whatever happened while we were not subscribed is caught here.
		r.requestResync()
		retry := time.After(4 * resubscribeDelay)
		if err == nil {
			retry = nil
		}
	events:
		for {
			select {
			case <-ctx.Done():
				sub.close()
				return
			case <-retry:
				break events
			case <-sub.ended:
				break events
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

// onDeleted notes a deleted route of ours. It does not take r.mu: during
// a large withdrawal the kernel floods notices, and blocking here would
// overflow the socket.
func (r *Reconciler) onDeleted(p netip.Prefix) {
	r.repairMu.Lock()
	r.repair[p] = struct{}{}
	r.repairMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// repairDeleted re-installs desired routes whose deletion was seen. Our
// own deletions also produce notices; those prefixes are no longer wanted
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
		k := keyOf(p)
		old, ok := r.table[k]
		if !ok || old.want == noHops {
			continue
		}
		// The kernel no longer has it (an exclusive create that meets a
		// route of ours after all is resolved in applyLocked).
		e := old
		e.have = noHops
		ops = r.planLocked(ops, k, e)
		r.put(k, old, e)
	}
	if len(ops) > 0 {
		r.stats.Repairs += uint64(len(ops))
		r.log.Info("re-installing routes deleted behind our back", "routes", len(ops))
		r.applyLocked(ops)
	}
}

// subscription holds the event sources; a nil channel never fires.
type subscription struct {
	deletes *deleteWatch
	ended   chan struct{} // closed when the deletion watch stops
	links   chan netlink.LinkUpdate
	addrs   chan netlink.AddrUpdate
	done    chan struct{}
}

func (s *subscription) close() {
	if s == nil {
		return
	}
	if s.done != nil {
		close(s.done)
		s.done = nil
	}
	if s.deletes != nil {
		s.deletes.close()
		s.deletes = nil
	}
}

func (r *Reconciler) subscribe(ctx context.Context) (*subscription, error) {
	s := &subscription{
		ended: make(chan struct{}),
		links: make(chan netlink.LinkUpdate, 64),
		addrs: make(chan netlink.AddrUpdate, 64),
		done:  make(chan struct{}),
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
	var err error
	if s.deletes, err = openDeleteWatch(r.ns, r.cfg.Table, r.cfg.Protocol, deleteWatchBuffer); err != nil {
		s.close()
		return &subscription{}, err
	}
	go func(w *deleteWatch) {
		defer close(s.ended)
		err := w.run(&r.notices, r.onDeleted, func() {
			r.log.Warn("route deletion notices overflowed; resyncing")
			r.requestResync()
		})
		if err != nil && ctx.Err() == nil {
			onErr(err)
		}
	}(s.deletes)
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
