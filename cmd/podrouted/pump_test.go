package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/podroute/podroute/bgp"
	"github.com/podroute/podroute/routes"
)

// recordingSink remembers the order of calls.
type recordingSink struct {
	mu     sync.Mutex
	events []string
	set    map[netip.Prefix][]netip.Addr
}

func (r *recordingSink) Update(set []routes.Route, del []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range set {
		r.set[rt.Prefix] = rt.NextHops
		r.events = append(r.events, "set "+rt.Prefix.String())
	}
	for _, p := range del {
		delete(r.set, p)
		r.events = append(r.events, "del "+p.String())
	}
	return nil
}

func (r *recordingSink) MarkSynced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "synced")
}

func (r *recordingSink) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// The speaker queues best paths and then reports End-of-RIB: every route
// queued before must reach the kernel before stale routes are swept, or
// a restart would drop a re-learned route for a moment.
func TestPumpAppliesQueuedUpdatesBeforeSync(t *testing.T) {
	updates := make(chan []bgp.RouteUpdate, 16)
	synced := make(chan struct{})
	sink := &recordingSink{set: map[netip.Prefix][]netip.Addr{}}
	nh := netip.MustParseAddr("10.0.0.1")
	for i := 0; i < 10; i++ {
		updates <- []bgp.RouteUpdate{{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24), NextHops: []netip.Addr{nh}}}
	}
	close(synced)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pumpRoutes(ctx, updates, synced, sink, slog.Default()); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := sink.snapshot()
		if len(ev) > 0 && ev[len(ev)-1] == "synced" {
			if len(ev) != 11 {
				t.Fatalf("events %v: want 10 routes then synced", ev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sync after 5s; events %v", ev)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// Later updates for a prefix win over earlier ones in the same batch, and
// a withdrawal (no next hops) becomes a delete.
func TestPumpMergesByPrefix(t *testing.T) {
	updates := make(chan []bgp.RouteUpdate, 16)
	sink := &recordingSink{set: map[netip.Prefix][]netip.Addr{}}
	p := netip.MustParsePrefix("10.244.9.0/24")
	q := netip.MustParsePrefix("10.244.8.0/24")
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	updates <- []bgp.RouteUpdate{{Prefix: p, NextHops: []netip.Addr{a}}, {Prefix: q, NextHops: []netip.Addr{a}}}
	updates <- []bgp.RouteUpdate{{Prefix: p, NextHops: []netip.Addr{b}}, {Prefix: q}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pumpRoutes(ctx, updates, nil, sink, slog.Default()); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		sink.mu.Lock()
		got, ok := sink.set[p]
		_, qThere := sink.set[q]
		sink.mu.Unlock()
		if ok && len(got) == 1 && got[0] == b && !qThere {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s -> %v, %s present %v; events %v", p, got, q, qThere, sink.snapshot())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
