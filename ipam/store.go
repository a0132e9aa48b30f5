package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// DefaultDir is where the plugin keeps its store unless the network config
// says otherwise.
const DefaultDir = "/var/lib/podroute/ipam"

const (
	stateFile = "allocations.json"
	// tmpFile is written and renamed over stateFile. One fixed name is safe
	// because only the lock holder writes it; a leftover from a killed
	// process is truncated by the next writer and never read.
	tmpFile  = stateFile + ".tmp"
	lockFile = "lock"

	stateVersion = 1
)

// Attachment is what CNI identifies a pod interface by.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (a Attachment) String() string { return a.ContainerID + "/" + a.IfName }

// Allocation is one attachment's addresses, at most one per family.
type Allocation struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Netns is CNI_NETNS as given at ADD, so `podroute ipam check` can tell
	// a live pod from a leaked allocation.
	Netns string       `json:"netns,omitempty"`
	Addrs []netip.Addr `json:"addresses"`
	Since time.Time    `json:"since"`
}

// Attachment returns the allocation's key.
func (a Allocation) Attachment() Attachment {
	return Attachment{ContainerID: a.ContainerID, IfName: a.IfName}
}

// State is the whole store, as it is on disk.
type State struct {
	Version int `json:"version"`
	// CIDRs are the pod CIDRs of the last writer: what the CLI compares
	// allocations with.
	CIDRs []netip.Prefix `json:"cidrs"`
	// Cursors maps a CIDR to the address handed out last from it.
	Cursors     map[string]netip.Addr `json:"cursors,omitempty"`
	Allocations []Allocation          `json:"allocations"`
}

// Find returns the allocation of att.
func (s State) Find(att Attachment) (Allocation, bool) {
	i := s.index(att)
	if i < 0 {
		return Allocation{}, false
	}
	return s.Allocations[i], true
}

// Holds reports whether a is allocated to any attachment.
func (s State) Holds(a netip.Addr) bool {
	return slices.ContainsFunc(s.Allocations, func(al Allocation) bool { return slices.Contains(al.Addrs, a) })
}

func (s State) index(att Attachment) int {
	return slices.IndexFunc(s.Allocations, func(a Allocation) bool { return a.Attachment() == att })
}

// Store is the allocation store of one node. It holds no state in memory
// between calls: every method is one transaction against the files, so any
// number of Stores (in any number of processes) may share a directory.
type Store struct {
	dir      string
	cidrs    []netip.Prefix
	reserved []netip.Addr
	now      func() time.Time
	lockWait time.Duration
}

// Option changes a Store's defaults.
type Option func(*Store)

// WithReserved sets addresses that are never handed out, on top of the
// built-in ones (network, broadcast, subnet anycast).
func WithReserved(addrs ...netip.Addr) Option {
	return func(s *Store) { s.reserved = append(s.reserved, addrs...) }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLockTimeout bounds the wait for another process's transaction
// (default 30s; kubelet's own CNI timeout is longer).
func WithLockTimeout(d time.Duration) Option { return func(s *Store) { s.lockWait = d } }

// Open returns the store in dir for the given pod CIDRs (as ParseCIDRs
// returns them), creating dir if needed. Allocations outside cidrs (left from
// an earlier pod CIDR) are kept until released.
func Open(dir string, cidrs []netip.Prefix, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("ipam: store directory is empty")
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("ipam: store directory %q: want an absolute path", dir)
	}
	if len(cidrs) == 0 {
		return nil, errors.New("ipam: no pod CIDR to allocate from")
	}
	s := &Store{dir: dir, cidrs: slices.Clone(cidrs), now: time.Now, lockWait: 30 * time.Second}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: creating store directory: %w", err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Request asks for addresses for one attachment.
type Request struct {
	Attachment
	Netns string
	// Want asks for these addresses (at most one per family); families
	// without one get the next free address.
	Want []netip.Addr
}

// ExhaustedError says a pod CIDR has no free address left.
type ExhaustedError struct {
	CIDR     netip.Prefix
	InUse    int
	Capacity *big.Int
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("pod CIDR %s is exhausted: %d of %s usable addresses are in use (release pods or give the node a larger CIDR)", e.CIDR, e.InUse, e.Capacity)
}

// Allocate gives req's attachment one address from each pod CIDR and
// records it. If the attachment already holds addresses, it gets the same
// ones back (an ADD that is repeated must not change the pod's address).
func (s *Store) Allocate(req Request) (Allocation, error) {
	if req.ContainerID == "" || req.IfName == "" {
		return Allocation{}, fmt.Errorf("ipam: allocate: container ID %q and interface %q must both be set", req.ContainerID, req.IfName)
	}
	want, err := s.checkWanted(req.Want)
	if err != nil {
		return Allocation{}, err
	}
	var got Allocation
	err = s.update(func(st *State) (bool, error) {
		if old, ok := st.Find(req.Attachment); ok {
			for _, w := range want {
				if !slices.Contains(old.Addrs, w) {
					return false, fmt.Errorf("ipam: %s already holds %v, which does not include the requested %s (DEL it first)", req.Attachment, old.Addrs, w)
				}
			}
			got = old
			if req.Netns == "" || req.Netns == old.Netns {
				return false, nil
			}
			// The runtime retried with a new namespace: record it, so
			// `podroute ipam check` follows the live pod.
			i := st.index(req.Attachment)
			st.Allocations[i].Netns = req.Netns
			got = st.Allocations[i]
			return true, nil
		}
		used := map[netip.Addr]Attachment{}
		for _, a := range st.Allocations {
			for _, addr := range a.Addrs {
				used[addr] = a.Attachment()
			}
		}
		alloc := Allocation{ContainerID: req.ContainerID, IfName: req.IfName, Netns: req.Netns, Since: s.now().UTC()}
		for _, p := range s.cidrs {
			var addr netip.Addr
			if w, ok := want[p]; ok {
				if holder, taken := used[w]; taken {
					return false, fmt.Errorf("ipam: requested address %s is already held by %s", w, holder)
				}
				addr = w
			} else {
				addr, err = s.pick(p, st.Cursors[p.String()], used)
				if err != nil {
					return false, err
				}
				if st.Cursors == nil {
					st.Cursors = map[string]netip.Addr{}
				}
				st.Cursors[p.String()] = addr
			}
			alloc.Addrs = append(alloc.Addrs, addr)
		}
		st.Allocations = append(st.Allocations, alloc)
		got = alloc
		return true, nil
	})
	return got, err
}

// checkWanted maps each wanted address to the pod CIDR it lies in.
func (s *Store) checkWanted(want []netip.Addr) (map[netip.Prefix]netip.Addr, error) {
	out := map[netip.Prefix]netip.Addr{}
	for _, w := range want {
		i := slices.IndexFunc(s.cidrs, func(p netip.Prefix) bool { return p.Contains(w) })
		if i < 0 {
			return nil, fmt.Errorf("ipam: requested address %s is outside this node's pod CIDRs %v", w, s.cidrs)
		}
		p := s.cidrs[i]
		if prev, dup := out[p]; dup {
			return nil, fmt.Errorf("ipam: requested addresses %s and %s are both in %s: ask for at most one per family", prev, w, p)
		}
		if s.isReserved(p, w) {
			return nil, fmt.Errorf("ipam: requested address %s is reserved in %s (network, broadcast, anycast or configured reserved address)", w, p)
		}
		out[p] = w
	}
	return out, nil
}

func (s *Store) isReserved(p netip.Prefix, a netip.Addr) bool {
	return isBuiltinReserved(p, a) || slices.Contains(s.reserved, a)
}

// pick returns the first free address of p after cursor (round robin).
func (s *Store) pick(p netip.Prefix, cursor netip.Addr, used map[netip.Addr]Attachment) (netip.Addr, error) {
	start := p.Masked().Addr()
	if cursor.IsValid() && p.Contains(cursor) {
		start = next(p, cursor)
	}
	// Every address that is not free is used or reserved, so a free one
	// turns up within that many steps (plus one); a pool smaller than that
	// is walked once, completely.
	inUse := 0
	for a := range used {
		if p.Contains(a) {
			inUse++
		}
	}
	limit := big.NewInt(int64(inUse) + builtinReserved(p) + int64(len(s.reserved)) + 1)
	if sz := size(p); sz.Cmp(limit) < 0 {
		limit = sz
	}
	a := start
	for i := int64(0); i < limit.Int64(); i++ {
		if _, taken := used[a]; !taken && !s.isReserved(p, a) {
			return a, nil
		}
		a = next(p, a)
	}
	return netip.Addr{}, &ExhaustedError{CIDR: p, InUse: inUse, Capacity: Capacity(p, s.reserved)}
}

// Get returns the allocation of att, if any.
func (s *Store) Get(att Attachment) (Allocation, bool, error) {
	st, err := ReadState(s.dir)
	if err != nil {
		return Allocation{}, false, err
	}
	a, ok := st.Find(att)
	return a, ok, nil
}

// Release frees att's addresses and returns what it held. Releasing an
// attachment that holds nothing is not an error (DEL is idempotent).
func (s *Store) Release(att Attachment) (Allocation, bool, error) {
	var gone Allocation
	var found bool
	err := s.update(func(st *State) (bool, error) {
		i := st.index(att)
		if i < 0 {
			return false, nil
		}
		gone, found = st.Allocations[i], true
		st.Allocations = slices.Delete(st.Allocations, i, i+1)
		return true, nil
	})
	return gone, found, err
}

// GC releases every allocation whose attachment is not in keep and returns
// them.
func (s *Store) GC(keep []Attachment) ([]Allocation, error) {
	valid := map[Attachment]bool{}
	for _, k := range keep {
		valid[k] = true
	}
	var gone []Allocation
	err := s.update(func(st *State) (bool, error) {
		kept := st.Allocations[:0]
		for _, a := range st.Allocations {
			if valid[a.Attachment()] {
				kept = append(kept, a)
			} else {
				gone = append(gone, a)
			}
		}
		st.Allocations = kept
		return len(gone) > 0, nil
	})
	return gone, err
}

// ReleaseAll releases the given attachments in one transaction and returns
// what they held. Unlike GC it never touches an allocation it was not
// named, so an ADD that lands while the caller decides is safe.
func (s *Store) ReleaseAll(atts []Attachment) ([]Allocation, error) {
	drop := map[Attachment]bool{}
	for _, a := range atts {
		drop[a] = true
	}
	var gone []Allocation
	err := s.update(func(st *State) (bool, error) {
		st.Allocations = slices.DeleteFunc(st.Allocations, func(a Allocation) bool {
			if drop[a.Attachment()] {
				gone = append(gone, a)
				return true
			}
			return false
		})
		return len(gone) > 0, nil
	})
	return gone, err
}

// List returns the whole store.
func (s *Store) List() (State, error) { return ReadState(s.dir) }

// CheckWritable proves the store can take a transaction: the lock can be
// taken and a file can be written and synced in the directory. It changes
// nothing.
func (s *Store) CheckWritable() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := ReadState(s.dir); err != nil {
		return err
	}
	probe := filepath.Join(s.dir, tmpFile)
	f, err := os.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ipam: store %s is not writable: %w", s.dir, err)
	}
	_, werr := f.Write([]byte("{}"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(probe)
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("ipam: store %s is not writable: %w", s.dir, err)
	}
	return nil
}

// update runs fn on the current state under the lock and, if fn reports a
// change, replaces the state on disk before releasing the lock.
func (s *Store) update(fn func(*State) (bool, error)) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := ReadState(s.dir)
	if err != nil {
		return err
	}
	changed, err := fn(&st)
	if err != nil || !changed {
		return err
	}
	st.Version = stateVersion
	st.CIDRs = s.cidrs
	return writeState(s.dir, &st)
}

// ReadState reads the store in dir without taking the lock (a reader always
// sees a whole file: see the package doc). A missing store is empty.
func ReadState(dir string) (State, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{Version: stateVersion}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("ipam: reading %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		// Never start over from empty: that would hand out addresses that
		// pods still hold. A person has to look.
		return State{}, fmt.Errorf("ipam: %s is corrupt (%v): refusing to allocate; inspect it, fix or restore it", path, err)
	}
	if st.Version != stateVersion {
		return State{}, fmt.Errorf("ipam: %s has format version %d, this build reads version %d", path, st.Version, stateVersion)
	}
	return st, nil
}

func writeState(dir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: encoding state: %w", err)
	}
	b = append(b, '\n')
	tmp := filepath.Join(dir, tmpFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ipam: writing store: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync() // the data must be on disk before the rename makes it current
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("ipam: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("ipam: replacing store: %w", err)
	}
	return syncDir(dir) // and the rename itself must survive a power cut
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ipam: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ipam: sync %s: %w", dir, err)
	}
	return nil
}
