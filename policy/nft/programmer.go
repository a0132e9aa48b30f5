package nft

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/podroute/podroute/policy"
)

// DefaultTable is the table podroute owns.
const DefaultTable = "podroute-policy"

// Options configures a Programmer.
type Options struct {
	// Table is the inet table to own; DefaultTable when empty.
	Table string
	// Enter runs fn inside the network namespace to program, and nil runs
	// it in the caller's. Every nft command runs inside fn, so it acts on
	// that namespace: tests program a namespace that stands for a node.
	Enter func(fn func() error) error
}

// Programmer keeps podroute's nftables table equal to the latest Result.
// It is safe for concurrent use; Syncs run one at a time.
type Programmer struct {
	table string
	enter func(func() error) error
	nft   knftables.Interface

	mu sync.Mutex
	// current is what the kernel holds, as far as this Programmer knows:
	// nil until read from the kernel, and again after a failed transaction
	// (which changes nothing, but the kernel may have drifted under it).
	current *State
}

// Stats describe one Sync.
type Stats struct {
	Ops      int           // operations in the transaction (0: nothing to do)
	Took     time.Duration // reading (if needed), diffing and the transaction
	Counts   Counts        // the table's size after the Sync
	ReadBack bool          // the kernel's table was read first (start, or after an error)
	// Transaction is the text sent to nft, for tests and debugging.
	Transaction string
}

// New checks that nft works (in the namespace Enter picks) and returns a
// Programmer. It changes nothing in the kernel.
func New(opts Options) (*Programmer, error) {
	p := &Programmer{table: opts.Table, enter: opts.Enter}
	if p.table == "" {
		p.table = DefaultTable
	}
	if p.enter == nil {
		p.enter = func(fn func() error) error { return fn() }
	}
	err := p.enter(func() error {
		var err error
		p.nft, err = knftables.New(knftables.InetFamily, p.table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nftables: %w (is the nftables package installed?)", err)
	}
	return p, nil
}

// Sync brings the table to what res renders to, in one transaction.
func (p *Programmer) Sync(ctx context.Context, res *policy.Result) (Stats, error) {
	want := Render(res)
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	var st Stats
	if p.current == nil {
		cur, err := p.read(ctx)
		if err != nil {
			return st, err
		}
		p.current = cur
		st.ReadBack = true
	}
	tx := p.nft.NewTransaction()
	plan(tx, p.table, p.current, want)
	st.Ops = tx.NumOperations()
	if st.Ops > 0 {
		st.Transaction = tx.String()
		if err := p.enter(func() error { return p.nft.Run(ctx, tx) }); err != nil {
			p.current = nil
			return st, fmt.Errorf("nftables transaction (%d operations): %w", st.Ops, err)
		}
	}
	p.current = want
	st.Took = time.Since(start)
	st.Counts = want.Counts()
	return st, nil
}

// Current returns the table as last written (nil before the first Sync).
// Callers must not change it.
func (p *Programmer) Current() *State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// Forget makes the next Sync read the table back from the kernel and
// repair whatever changed under it (someone's `nft` by hand): the periodic
// resync calls it.
func (p *Programmer) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = nil
}

// Remove deletes the table: for uninstalling podroute, never on a normal
// stop (the rules must outlive podrouted).
func (p *Programmer) Remove(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = nil
	tx := p.nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	return p.enter(func() error { return p.nft.Run(ctx, tx) })
}

// Read returns the table as the kernel holds it now.
func (p *Programmer) Read(ctx context.Context) (*State, error) {
	return p.read(ctx)
}

func (p *Programmer) read(ctx context.Context) (*State, error) {
	var out []byte
	err := p.enter(func() error {
		cmd := exec.CommandContext(ctx, "nft", "-j", "list", "table", "inet", p.table)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		if err != nil {
			if strings.Contains(stderr.String(), "No such file or directory") {
				out = nil
				return nil
			}
			return fmt.Errorf("nft list table inet %s: %w: %s", p.table, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return &State{Chains: map[string]*Chain{}, Sets: map[string]*Set{}}, nil
	}
	return parseTable(out)
}

// plan adds to tx what turns cur into want. The order matters inside the
// transaction: objects are created before anything refers to them and
// deleted after the last reference to them is gone.
func plan(tx *knftables.Transaction, table string, cur, want *State) {
	if len(cur.Chains) == 0 && len(cur.Sets) == 0 {
		tx.Add(&knftables.Table{Comment: knftables.PtrTo("podroute: NetworkPolicy for this node's pods; written by podrouted, do not edit")})
	}
	// 1. Sets and maps, and set elements. Map elements wait until their
	// chains exist.
	for _, name := range sortedKeys(want.Sets) {
		w := want.Sets[name]
		c := cur.Sets[name]
		if c == nil {
			addSet(tx, w)
		}
		if w.Map {
			continue
		}
		elems(tx, w, c)
	}
	// 2. Chains: policies' first (pods' chains jump to them), then pods',
	// then the base chains, which refer to the maps only.
	order := func(name string) int {
		switch {
		case strings.HasPrefix(name, "pol-"):
			return 0
		case strings.HasPrefix(name, "pod-"):
			return 1
		}
		return 2
	}
	for pass := 0; pass < 3; pass++ {
		for _, name := range sortedKeys(want.Chains) {
			if order(name) != pass {
				continue
			}
			w, c := want.Chains[name], cur.Chains[name]
			if c != nil && c.Digest == w.Digest && c.Hook == w.Hook && len(c.Rules) == len(w.Rules) {
				continue
			}
			if c != nil && c.Hook != w.Hook {
				// A base chain's hook cannot change in place.
				tx.Flush(&knftables.Chain{Name: name})
				tx.Delete(&knftables.Chain{Name: name})
				c = nil
			}
			addChain(tx, w)
			if c != nil {
				tx.Flush(&knftables.Chain{Name: name})
			}
			for _, r := range w.Rules {
				tx.Add(&knftables.Rule{Chain: name, Rule: r, Comment: knftables.PtrTo(w.comment())})
			}
		}
	}
	// 3. Map elements, now that every chain they point to exists.
	for _, name := range sortedKeys(want.Sets) {
		if w := want.Sets[name]; w.Map {
			elems(tx, w, cur.Sets[name])
		}
	}
	// 4. Deletions: maps' elements went above; then pods' chains (only the
	// maps pointed to them), policies' chains (only pods' chains jumped to
	// them), and last the sets (only policies' chains used them).
	for _, pass := range []int{1, 0, 2} {
		for _, name := range sortedKeys(cur.Chains) {
			if _, keep := want.Chains[name]; keep || order(name) != pass {
				continue
			}
			tx.Flush(&knftables.Chain{Name: name})
			tx.Delete(&knftables.Chain{Name: name})
		}
	}
	for _, name := range sortedKeys(cur.Sets) {
		if _, keep := want.Sets[name]; keep {
			continue
		}
		if cur.Sets[name].Map {
			tx.Delete(&knftables.Map{Name: name})
		} else {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
}

func addSet(tx *knftables.Transaction, s *Set) {
	comment := knftables.PtrTo(truncate(s.Label, 120))
	if s.Map {
		tx.Add(&knftables.Map{Name: s.Name, Type: s.Type, Comment: comment})
		return
	}
	set := &knftables.Set{Name: s.Name, Type: s.Type, Comment: comment}
	if s.Interval {
		set.Flags = []knftables.SetFlag{knftables.IntervalFlag}
	}
	tx.Add(set)
}

func addChain(tx *knftables.Transaction, c *Chain) {
	ch := &knftables.Chain{Name: c.Name, Comment: knftables.PtrTo(truncate(c.Label, 120))}
	if c.Hook != "" {
		ch.Type = knftables.PtrTo(knftables.FilterType)
		ch.Hook = knftables.PtrTo(knftables.BaseChainHook(c.Hook))
		ch.Priority = knftables.PtrTo(knftables.BaseChainPriority(c.Priority))
	}
	tx.Add(ch)
}

// elems adds to tx the element changes from cur (nil: a new set) to want.
func elems(tx *knftables.Transaction, want, cur *Set) {
	if cur != nil && sameElems(cur.Elems, want.Elems) {
		return // the common case: O(n) lookups, no sorting
	}
	if cur != nil && cur.unsure {
		// The kernel's spelling may not match ours: start from empty.
		flushSet(tx, want)
		cur = nil
	}
	if cur != nil {
		for _, k := range sortedKeys(cur.Elems) {
			v, ok := want.Elems[k]
			if ok && v == cur.Elems[k] {
				continue
			}
			tx.Delete(element(want, k, ""))
		}
	}
	for _, k := range sortedKeys(want.Elems) {
		if cur != nil {
			if v, ok := cur.Elems[k]; ok && v == want.Elems[k] {
				continue
			}
		}
		tx.Add(element(want, k, want.Elems[k]))
	}
}

func flushSet(tx *knftables.Transaction, s *Set) {
	if s.Map {
		tx.Flush(&knftables.Map{Name: s.Name})
	} else {
		tx.Flush(&knftables.Set{Name: s.Name})
	}
}

func element(s *Set, key, value string) *knftables.Element {
	e := &knftables.Element{Key: strings.Split(key, " . ")}
	if s.Map {
		e.Map = s.Name
		if value != "" {
			e.Value = []string{value}
		}
	} else {
		e.Set = s.Name
	}
	return e
}

func sameElems(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
