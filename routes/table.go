package routes

import (
	"net/netip"
	"slices"
	"strings"
)

// The reconciler's state is one compact map for the whole table: a prefix
// key without pointers (so the garbage collector never scans the map) to
// an entry of two small ids, what is wanted and what the kernel holds.
// Next-hop sets are interned: the 100k routes behind one peer share one
// set, instead of holding two slices each (desired and kernel).

// pkey is a prefix as a comparable value without pointers.
type pkey struct {
	addr [16]byte
	bits uint8
	v6   bool
}

func keyOf(p netip.Prefix) pkey {
	return pkey{addr: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (k pkey) prefix() netip.Prefix {
	a := netip.AddrFrom16(k.addr)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// hopsID names an interned next-hop set.
type hopsID uint32

const (
	// noHops: nothing (not wanted, or not in the kernel).
	noHops hopsID = 0
	// blackholeHops: a blackhole route.
	blackholeHops hopsID = 1
)

// hopTable interns next-hop sets. Sets are never freed one by one;
// compact rebuilds the table from the ids still in use when it has grown
// well past them (a peer cycling through many next hops).
type hopTable struct {
	sets [][]netip.Addr
	// single indexes one-hop sets (most routes) without building a key;
	// index the others.
	single map[netip.Addr]hopsID
	index  map[string]hopsID
	// last is the set looked up last: a table load repeats one set for
	// thousands of routes in a row.
	last   []netip.Addr
	lastID hopsID
}

func newHopTable() hopTable {
	return hopTable{sets: make([][]netip.Addr, 2), single: map[netip.Addr]hopsID{}, index: map[string]hopsID{}}
}

// id interns a normalized (sorted, de-duplicated, non-empty) set.
func (t *hopTable) id(hops []netip.Addr) hopsID {
	if t.lastID != noHops && slices.Equal(hops, t.last) {
		return t.lastID
	}
	var id hopsID
	var ok bool
	if len(hops) == 1 {
		id, ok = t.single[hops[0]]
	} else {
		id, ok = t.index[hopsKey(hops)]
	}
	if !ok {
		id = hopsID(len(t.sets))
		set := slices.Clone(hops)
		t.sets = append(t.sets, set)
		if len(hops) == 1 {
			t.single[hops[0]] = id
		} else {
			t.index[hopsKey(hops)] = id
		}
	}
	t.last, t.lastID = t.sets[id], id
	return id
}

// hops is the set behind id; callers must not modify it.
func (t *hopTable) hops(id hopsID) []netip.Addr {
	if id < 2 || int(id) >= len(t.sets) {
		return nil
	}
	return t.sets[id]
}

func hopsKey(hops []netip.Addr) string {
	var b strings.Builder
	for _, a := range hops {
		s := a.As16()
		b.Write(s[:])
	}
	return b.String()
}

// entry is one prefix's state.
type entry struct {
	want, have hopsID
	flags      uint8
}

const (
	// flagOwn: the prefix is one of SetBlackholes' (this node's own pod
	// CIDRs); only SetBlackholes changes it.
	flagOwn uint8 = 1 << iota
	// flagStale: adopted from a previous run, kept until MarkSynced or
	// re-learned.
	flagStale
)

// action is what the kernel needs for one entry.
type action uint8

const (
	actNone action = iota
	actCreate
	actReplace
	actDelete
)

// decide is the pure diff at the heart of the reconciler: what the kernel
// needs so that it holds what is wanted. A route of ours that is not
// wanted goes, unless it was adopted from a previous run and the table is
// not re-learned yet.
func decide(e entry) action {
	switch {
	case e.want != noHops && e.have == noHops:
		return actCreate
	case e.want != noHops && e.have != e.want:
		return actReplace
	case e.want == noHops && e.have != noHops && e.flags&flagStale == 0:
		return actDelete
	}
	return actNone
}

// counts are the running totals behind Summary, kept per change so that
// status and metrics never walk the table.
type counts struct {
	learned, blackholes, stale, inKernel int
}

func (c *counts) add(e entry, d int) {
	switch {
	case e.want == blackholeHops:
		c.blackholes += d
	case e.want != noHops:
		c.learned += d
	}
	if e.flags&flagStale != 0 && e.want == noHops {
		c.stale += d
	}
	if e.want != noHops && e.have == e.want {
		c.inKernel += d
	}
}
