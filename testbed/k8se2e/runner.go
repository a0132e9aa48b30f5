package k8se2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podroute/podroute/testbed/images"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/topology"
)

// Options configure a run.
type Options struct {
	// Suites are run one after the other on the same lab; nil means
	// "network".
	Suites []string
	// Focus, if set, replaces the suites' focus: one run named "focus"
	// (Leave and the skip list still apply).
	Focus string
	// Procs is the number of ginkgo processes (0: each suite's default).
	Procs int
	// ReportDir receives one directory per suite with the JUnit report
	// (junit_01.xml) and ginkgo's full output (ginkgo.log). Required.
	ReportDir string
	// BinDir holds e2e.test, ginkgo and kubectl; "" means
	// images.DefaultBinDir() (`make k8s-tools e2e-tools`).
	BinDir string
	// Timeout is ginkgo's --timeout per suite (default 90 minutes).
	Timeout time.Duration
	// Out receives ginkgo's output and the report.
	Out io.Writer
}

// SuiteResult is one suite's outcome.
type SuiteResult struct {
	Suite Suite
	Counts
	JUnit string
	Log   string
	Took  time.Duration
	// Err is set when the run did not produce a report (ginkgo could not
	// start, the suite was interrupted before its report).
	Err error
}

// Result is a whole run.
type Result struct {
	Suites []SuiteResult
	Total  Counts
	// LabUp, Specs and Teardown add up to Took (LabUp and Teardown are 0
	// for a lab that was already up).
	LabUp, Specs, Teardown, Took time.Duration
	// MemoryPeak is the largest sample (every 15 s) per component while
	// the specs ran; MemoryEnd the last one.
	MemoryPeak, MemoryEnd lab.Memory
	ReportDir             string
	Nodes                 int
}

// CheckBinaries reports what a run needs that is missing, with the target
// that builds it.
func CheckBinaries(binDir string) error {
	if binDir == "" {
		binDir = images.DefaultBinDir()
	}
	var missing []string
	for _, b := range []string{"e2e.test", "ginkgo", "kubectl"} {
		if fi, err := os.Stat(filepath.Join(binDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(binDir, b))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: build them with `make k8s-tools e2e-tools`", strings.Join(missing, ", "))
	}
	return nil
}

func (o *Options) defaults() error {
	if o.BinDir == "" {
		o.BinDir = images.DefaultBinDir()
	}
	if o.Timeout == 0 {
		o.Timeout = 90 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if len(o.Suites) == 0 {
		o.Suites = []string{"network"}
	}
	if o.ReportDir == "" {
		return errors.New("k8se2e: ReportDir is required")
	}
	return CheckBinaries(o.BinDir)
}

// suites resolves the options into the runs to make.
func (o *Options) suites() ([]Suite, error) {
	var out []Suite
	for _, name := range o.Suites {
		s, err := SuiteNamed(name)
		if err != nil {
			return nil, err
		}
		if o.Focus != "" {
			s.Name, s.Focus, s.About = "focus", o.Focus, "--focus "+o.Focus
			return []Suite{s}, nil
		}
		out = append(out, s)
	}
	return out, nil
}

// Run brings up the real-node lab for topo (Kubernetes mode; labOpts'
// Kubernetes must be set), runs the suites against it and tears it down,
// also when something fails.
func Run(ctx context.Context, topo *topology.Topology, labOpts lab.Options, o Options) (res *Result, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if _, err := o.suites(); err != nil {
		return nil, err
	}
	if labOpts.Kubernetes == nil {
		return nil, errors.New("k8se2e: the lab must run in Kubernetes mode")
	}
	begin := time.Now()
	fmt.Fprintf(o.Out, "e2e: bringing up the real-node lab (topology %s) in %s\n", topo.Name, labOpts.StateDir)
	l, err := lab.Up(ctx, topo, labOpts)
	if err != nil {
		return nil, fmt.Errorf("the real-node lab did not come up: %w", err)
	}
	labUp := time.Since(begin)
	fmt.Fprintf(o.Out, "e2e: lab %s up in %s\n", l.RunID(), l.Startup)
	defer func() {
		t0 := time.Now()
		fmt.Fprintf(o.Out, "e2e: tearing the lab down\n")
		derr := l.Down()
		if res != nil {
			res.Teardown = time.Since(t0)
			res.LabUp = labUp
			res.Took = time.Since(begin)
		}
		if derr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", derr))
		}
	}()
	return RunOnLab(ctx, l, o)
}

// RunOnLab runs the suites against a lab that is up in Kubernetes mode,
// one after the other, from inside the control plane's network namespace
// (as a pod on the lab's network would, with the admin kubeconfig), and
// measures the lab's memory while they run.
func RunOnLab(ctx context.Context, l *lab.Lab, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	suites, err := o.suites()
	if err != nil {
		return nil, err
	}
	k := l.KubeState()
	if k == nil {
		return nil, errors.New("k8se2e: the lab does not run in Kubernetes mode")
	}
	res := &Result{ReportDir: o.ReportDir, Nodes: len(l.Plan.Nodes)}
	if err := os.MkdirAll(o.ReportDir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "e2e: skip list (specs this machine cannot run):\n%s", SkipText())

	// Memory, sampled while the specs run.
	stop := make(chan struct{})
	var mu sync.Mutex
	var wg sync.WaitGroup
	sample := func() {
		m := l.Memory()
		mu.Lock()
		res.MemoryPeak = res.MemoryPeak.Max(m)
		res.MemoryEnd = m
		mu.Unlock()
	}
	sample()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Second):
				sample()
			}
		}
	}()

	begin := time.Now()
	for _, s := range suites {
		sr := runSuite(ctx, l, k, s, o)
		res.Suites = append(res.Suites, sr)
		res.Total = res.Total.Add(sr.Counts)
		if ctx.Err() != nil {
			break
		}
	}
	res.Specs = time.Since(begin)
	res.Took = res.Specs
	close(stop)
	wg.Wait()
	sample()
	var errs []error
	for _, sr := range res.Suites {
		if sr.Err != nil {
			errs = append(errs, fmt.Errorf("suite %s: %w", sr.Suite.Name, sr.Err))
		}
	}
	return res, errors.Join(errs...)
}

func runSuite(ctx context.Context, l *lab.Lab, k *lab.KubeState, s Suite, o Options) SuiteResult {
	sr := SuiteResult{Suite: s}
	dir := filepath.Join(o.ReportDir, s.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		sr.Err = err
		return sr
	}
	procs := o.Procs
	if procs == 0 {
		procs = s.Procs
	}
	skip := s.Leave
	if p := SkipPattern(); p != "" {
		skip += "|" + p
	}
	bin := o.BinDir
	runIn := k.Namespace
	if s.FromOutside && k.ClientNamespace != "" {
		runIn = k.ClientNamespace
	}
	argv := []string{"netns", "exec", runIn, filepath.Join(bin, "ginkgo"),
		"--procs=" + strconv.Itoa(procs), "--focus=" + s.Focus, "--skip=" + skip,
		"--no-color", "--silence-skips", "--timeout=" + o.Timeout.String(),
		filepath.Join(bin, "e2e.test"), "--",
		"--kubeconfig=" + k.AdminKubeconfig, "--provider=skeleton", "--report-dir=" + dir,
		// Without it the specs that need several nodes skip themselves
		// ("Requires at least 2 nodes (not -1)").
		"--num-nodes=" + strconv.Itoa(len(l.Plan.Nodes)),
	}
	fmt.Fprintf(o.Out, "\ne2e: suite %s (%s)\ne2e: ip %s\n", s.Name, s.About, strings.Join(quoteArgs(argv), " "))
	sr.Log = filepath.Join(dir, "ginkgo.log")
	logf, err := os.Create(sr.Log)
	if err != nil {
		sr.Err = err
		return sr
	}
	defer logf.Close()
	cctx, cancel := context.WithTimeout(ctx, o.Timeout+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "ip", argv...)
	// kubectl for the specs that call it; nothing of ~/.kube.
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+k.AdminKubeconfig,
		"KUBECACHEDIR="+filepath.Join(dir, "kubectl-cache"))
	cmd.Dir = dir
	out := io.MultiWriter(o.Out, logf)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	begin := time.Now()
	runErr := cmd.Run()
	sr.Took = time.Since(begin)
	junit, err := FindJUnit(dir)
	if err != nil {
		sr.Err = fmt.Errorf("ginkgo: %v; %w (its output: %s)", runErr, err, sr.Log)
		return sr
	}
	sr.JUnit = junit
	if sr.Counts, err = ParseJUnit(junit); err != nil {
		sr.Err = err
	}
	if sr.Passed+sr.Failed == 0 {
		sr.Err = fmt.Errorf("no spec ran (focus %q; ginkgo: %v)", s.Focus, runErr)
	}
	return sr
}

// quoteArgs quotes what a shell would split, for a copyable command line.
func quoteArgs(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if strings.ContainsAny(a, ` |()[]\*'"$`) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

var summaryRE = regexp.MustCompile(`^(Ran \d+ of \d+ Specs|SUCCESS!|FAIL!|Ginkgo ran \d+ suite)`)

// ginkgoSummary returns the lines of ginkgo's own summary from its log.
func ginkgoSummary(log string) []string {
	b, err := os.ReadFile(log)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if summaryRE.MatchString(strings.TrimSpace(line)) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// Print writes the report: per suite ginkgo's summary, the counts, the
// JUnit path and the specs that failed or skipped themselves; the time and
// memory; and last the closing line "N passed, M failed".
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\n==== e2e report (%s)\n", r.ReportDir)
	for _, s := range r.Suites {
		fmt.Fprintf(w, "suite %s: %s, %d skipped themselves at run time, in %s\n", s.Suite.Name, s.Counts, s.Skipped, s.Took.Round(time.Second))
		for _, line := range ginkgoSummary(s.Log) {
			fmt.Fprintf(w, "  ginkgo: %s\n", line)
		}
		if s.JUnit != "" {
			fmt.Fprintf(w, "  JUnit report: %s\n", s.JUnit)
		}
		fmt.Fprintf(w, "  ginkgo output: %s\n", s.Log)
		if s.Err != nil {
			fmt.Fprintf(w, "  error: %v\n", s.Err)
		}
		for _, f := range s.FailedSpecs {
			fmt.Fprintf(w, "  FAILED: %s\n", f)
		}
		for _, f := range s.SkippedSpecs {
			fmt.Fprintf(w, "  skipped itself: %s\n", f)
		}
	}
	if r.LabUp > 0 {
		fmt.Fprintf(w, "time: %s in all (lab up %s, specs %s, teardown %s)\n", r.Took.Round(time.Second),
			r.LabUp.Round(time.Second), r.Specs.Round(time.Second), r.Teardown.Round(time.Second))
	} else {
		fmt.Fprintf(w, "time: specs %s\n", r.Specs.Round(time.Second))
	}
	fmt.Fprintf(w, "memory of the cluster (RSS), peak while the specs ran, %d nodes:\n", r.Nodes)
	var b strings.Builder
	r.MemoryPeak.Print(&b)
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintf(w, "%s\n", r.Total)
}

// LabOptions returns the Kubernetes-mode options of a real-node lab with
// the binaries in their default places (manifests from manifestsDir).
func LabOptions(k8sBinDir, manifestsDir string) *lab.KubernetesOptions {
	if k8sBinDir == "" {
		k8sBinDir = k8sharness.DefaultBinDir()
	}
	return &lab.KubernetesOptions{Start: k8sharness.LabStarter(k8sBinDir), ManifestsDir: manifestsDir, NodeBinDir: k8sBinDir}
}
