package nft

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podroute/podroute/policy"
)

// A remote pod's label change adds its addresses to exactly the peer sets
// that now select it, and a local pod's label change rewrites only that
// pod's chains and map entries: no policy chain, no other pod, one
// transaction each.
func TestKernelLabelChangeIsIncremental(t *testing.T) {
	pods := append(append([]labPod{}, semanticsPods...),
		labPod{ns: "ns-a", name: "client2", n: 23, labels: map[string]string{"app": "nobody"}})
	l := newLab(t, pods)
	pols := semanticsPolicies()
	l.sync(input(pods, pols...))
	l.check(pods, []kflow{{"client2", "web", policy.TCP, 8080, false}})

	// A remote pod becomes a client: two set elements, nothing else.
	pods[len(pods)-1].labels = map[string]string{"app": "client"}
	st := l.sync(input(pods, pols...))
	webIn := policy.Key{Namespace: "ns-a", Name: "web-in"}
	rule0 := policy.Compute(input(pods, pols...)).Policies[webIn].Ingress[0]
	lines := txLines(st.Transaction)
	want := []string{
		fmt.Sprintf("add element inet %s %s { 10.0.1.23/32 }", DefaultTable, peerSet(rule0, 4)),
		fmt.Sprintf("add element inet %s %s { fd00:1::23/128 }", DefaultTable, peerSet(rule0, 6)),
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("remote label change sent:\n%s\nwant exactly:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	l.check(pods, []kflow{
		{"client2", "web", policy.TCP, 8080, true},
		{"client", "web", policy.TCP, 8080, true},
		{"other", "web", policy.TCP, 8080, false},
	})

	// A local pod (db) becomes a web: web-in and web-out now select it,
	// db-deny no longer does.
	pods[1].labels = map[string]string{"app": "web"}
	st = l.sync(input(pods, pols...))
	db := policy.Key{Namespace: "ns-a", Name: "db"}
	web := policy.Key{Namespace: "ns-a", Name: "web"}
	webOut := policy.Key{Namespace: "ns-a", Name: "web-out"}
	dbDeny := policy.Key{Namespace: "ns-a", Name: "db-deny"}
	for _, line := range txLines(st.Transaction) {
		switch {
		case strings.Contains(line, PolicyChain(dbDeny, policy.Ingress)):
			// db-deny selects no pod of this node any more: its chain goes.
		case strings.Contains(line, DefaultTable+" "+PolicyChain(webIn, policy.Ingress)) || strings.Contains(line, DefaultTable+" "+PolicyChain(webOut, policy.Egress)):
			t.Errorf("a policy chain changed for a pod's label change: %s", line)
		case strings.Contains(line, DefaultTable+" "+PodChain(web, policy.Ingress)) || strings.Contains(line, DefaultTable+" "+PodChain(web, policy.Egress)):
			t.Errorf("another pod's chain changed: %s", line)
		case strings.Contains(line, "rule") && !strings.Contains(line, PodChain(db, policy.Ingress)) && !strings.Contains(line, PodChain(db, policy.Egress)):
			t.Errorf("a rule outside db's chains changed: %s", line)
		}
	}
	t.Logf("local label change: %d operations:\n%s", st.Ops, st.Transaction)
	l.check(pods, []kflow{
		{"client", "db", policy.UDP, 5353, true}, // web-in's ipBlock rule now covers db
		{"client", "db", policy.TCP, 80, false},  // db has no "http" port
		{"db", "client", policy.TCP, 80, false},  // web-out isolates db's egress now
		{"db", "api", policy.TCP, 9090, true},
		{"client", "web", policy.TCP, 8080, true},
	})

	// The same input again: nothing to send.
	if st := l.sync(input(pods, pols...)); st.Ops != 0 {
		t.Errorf("an unchanged input sent %d operations:\n%s", st.Ops, st.Transaction)
	}
}

func txLines(tx string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(tx), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// helperEnv makes the test binary act as a freshly started podrouted: it
// reads an Input from the file the variable names, programs the kernel of
// the namespace it runs in with a new Programmer, prints the Stats as JSON
// and exits.
const helperEnv = "PODROUTE_POLICY_HELPER_INPUT"

func TestHelperProgrammer(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("only runs as a helper process")
	}
	raw, err := os.ReadFile(path)
	must(t, err)
	var in policy.Input
	must(t, json.Unmarshal(raw, &in))
	p, err := New(Options{})
	must(t, err)
	st, err := p.Sync(context.Background(), policy.Compute(in))
	must(t, err)
	out, _ := json.Marshal(st)
	fmt.Printf("STATS %s\n", out)
}

// restart runs a new process in the node namespace that programs in, as a
// restarted podrouted does, and returns its Stats.
func (l *lab) restart(in policy.Input) Stats {
	l.t.Helper()
	raw, err := json.Marshal(in)
	must(l.t, err)
	path := filepath.Join(l.t.TempDir(), "input.json")
	must(l.t, os.WriteFile(path, raw, 0o644))
	self, err := os.Executable()
	must(l.t, err)
	cmd := l.node.Command(self, "-test.run=^TestHelperProgrammer$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("restarted programmer: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "STATS "); ok {
			var st Stats
			must(l.t, json.Unmarshal([]byte(s), &st))
			return st
		}
	}
	l.t.Fatalf("restarted programmer printed no stats:\n%s", out)
	return Stats{}
}

// A restart (a new process with a new Programmer and no memory) reads the
// table, finds it right and sends nothing; it repairs a table changed
// under it in one transaction; and all along, denied flows never pass and
// allowed ones never fail. Other tables in the namespace are never touched.
func TestKernelRestartKeepsEnforcing(t *testing.T) {
	l := newLab(t, semanticsPods)
	foreign := filepath.Join(t.TempDir(), "kube-proxy.nft")
	must(t, os.WriteFile(foreign, []byte(`table inet kube-proxy {
	set svc { type ipv4_addr ; elements = { 10.96.0.1 } }
	chain kp-filter { type filter hook forward priority filter - 1 ; policy accept ; ip daddr @svc counter ; }
}
`), 0o644))
	_, err := l.node.Exec(t.Context(), "nft", "-f", foreign)
	must(t, err)
	listForeign := func() string {
		out, err := l.node.Exec(t.Context(), "nft", "list", "table", "inet", "kube-proxy")
		must(t, err)
		return string(out)
	}
	before := listForeign()

	in := input(semanticsPods, semanticsPolicies()...)
	l.sync(in)

	// Probe continuously while the programmer restarts.
	var stop atomic.Bool
	var wrong sync.Map
	var rounds atomic.Int64
	var wg sync.WaitGroup
	flows := []kflow{
		{"client", "db", policy.TCP, 80, false},
		{"other", "web", policy.TCP, 8080, false},
		{"web", "client", policy.TCP, 7000, false},
		{"client", "web", policy.TCP, 8080, true},
		{"web", "api", policy.TCP, 9090, true},
	}
	byName := map[string]labPod{}
	for _, p := range semanticsPods {
		byName[p.name] = p
	}
	for _, f := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				from, to := byName[f.from], byName[f.to]
				ns := l.remote
				if from.local {
					ns = l.pods[f.from]
				}
				err := probe(ns, f.proto, from.addr(4), to.addr(4), f.port)
				if (err == nil) != f.want {
					wrong.Store(fmt.Sprintf("%s -> %s %s/%d", f.from, f.to, f.proto, f.port), err)
				}
				rounds.Add(1)
				if err == nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()

	// 1. Restart with the same input: nothing to send.
	st := l.restart(in)
	if !st.ReadBack || st.Ops != 0 {
		t.Errorf("restart with an unchanged input: read back %v, %d operations, want a read and none:\n%s", st.ReadBack, st.Ops, st.Transaction)
	}

	// 2. Someone changes the table under podroute: a peer removed from a
	// set, a drop added where it does not belong. The next start repairs
	// exactly those, in one transaction.
	webIn := policy.Key{Namespace: "ns-a", Name: "web-in"}
	set := peerSet(policy.Compute(in).Policies[webIn].Ingress[1], 4)
	_, err = l.node.Exec(t.Context(), "nft", "add", "element", "inet", DefaultTable, set, "{ 10.9.9.9 }")
	must(t, err)
	_, err = l.node.Exec(t.Context(), "nft", "add", "rule", "inet", DefaultTable, PolicyChain(webIn, policy.Ingress), "counter")
	must(t, err)
	st = l.restart(in)
	t.Logf("repair after tampering: %d operations:\n%s", st.Ops, st.Transaction)
	for _, line := range txLines(st.Transaction) {
		if !strings.Contains(line, set) && !strings.Contains(line, PolicyChain(webIn, policy.Ingress)) {
			t.Errorf("the repair touched more than the tampered set and chain: %s", line)
		}
	}
	if !hasLine(st.Transaction, "flush set inet "+DefaultTable+" "+set) || !hasLine(st.Transaction, "flush chain inet "+DefaultTable+" "+PolicyChain(webIn, policy.Ingress)) {
		t.Error("the tampered set and chain were not both rewritten")
	}
	if st := l.restart(in); st.Ops != 0 {
		t.Errorf("after the repair, a restart still sends %d operations:\n%s", st.Ops, st.Transaction)
	}
	for rounds.Load() < int64(4*len(flows)) {
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	wrong.Range(func(k, v any) bool {
		t.Errorf("during restarts, %s went the wrong way (%v)", k, v)
		return true
	})
	t.Logf("%d probes during the restarts", rounds.Load())

	// 3. A restart with a changed input (db-deny deleted while podrouted
	// was down) applies the change.
	st = l.restart(input(semanticsPods, semanticsPolicies()[:2]...))
	if st.Ops == 0 || st.Ops > 12 {
		t.Errorf("restart after a policy was deleted: %d operations, want a few:\n%s", st.Ops, st.Transaction)
	}
	l.check(semanticsPods, []kflow{{"client", "db", policy.TCP, 80, true}, {"other", "web", policy.TCP, 8080, false}})

	if after := listForeign(); after != before {
		t.Errorf("another table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	must(t, l.prog.Remove(t.Context()))
	if after := listForeign(); after != before {
		t.Errorf("Remove changed another table:\n%s", after)
	}
	if _, err := l.node.Exec(t.Context(), "nft", "list", "table", "inet", DefaultTable); err == nil {
		t.Error("Remove left podroute's table")
	}
}
