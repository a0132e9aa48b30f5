package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/podroute/podroute/api"
)

// fakeDaemon serves fixed answers on the status API, or a fixed error.
type fakeDaemon struct {
	api.UnimplementedStatusServer
	status *api.GetStatusResponse
	routes *api.ListRoutesResponse
	err    error
	// summaryOnly records the last ListRoutes request's flag.
	summaryOnly bool
	policy      *api.GetPolicyResponse
}

func (f *fakeDaemon) GetPolicy(context.Context, *api.GetPolicyRequest) (*api.GetPolicyResponse, error) {
	return f.policy, f.err
}

func (f *fakeDaemon) GetStatus(context.Context, *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	return f.status, f.err
}

func (f *fakeDaemon) ListRoutes(_ context.Context, req *api.ListRoutesRequest) (*api.ListRoutesResponse, error) {
	f.summaryOnly = req.GetSummaryOnly()
	return f.routes, f.err
}

// serveFake starts d on a fresh unix socket made by api.Listen, as podrouted
// does, and returns the socket's path.
func serveFake(t *testing.T, d *fakeDaemon) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterStatusServer(srv, d)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return path
}

// runCLI runs the root command with args and an environment holding only env,
// and returns what it printed on stdout.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand(func(k string) string { return env[k] })
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// liveStatus is knownStatus moved to the real clock, which the CLI reads:
// the node has been up 3m12s, the established session 2h5m.
func liveStatus() *api.GetStatusResponse {
	resp := knownStatus()
	shift := time.Now().Unix() - now.Unix()
	resp.Node.StartedUnix += shift
	for _, p := range resp.Peers {
		if p.StateSinceUnix != 0 {
			p.StateSinceUnix += shift
		}
	}
	return resp
}

func TestStatusCommandAgainstDaemon(t *testing.T) {
	path := serveFake(t, &fakeDaemon{status: liveStatus()})
	out, err := runCLI(t, nil, "--socket", path, "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	header := lineWith(t, out, "podrouted is running on node node-a")
	// "up 3m1", not the exact age: a second may pass during the test.
	if !strings.Contains(header, "(AS 65001, router ID 10.0.0.1, up 3m1") || !strings.HasSuffix(header, "table re-learned: yes)") {
		t.Errorf("header = %q", header)
	}
	fields := strings.Fields(lineWith(t, out, "10.0.0.254"))
	if len(fields) != 8 || fields[1] != "65000" || fields[3] != "Established" || fields[4] != "2h5m" || fields[6] != "11" {
		t.Errorf("established peer line fields = %q", fields)
	}
	lineWith(t, out, "fd00::fe")
	if !strings.Contains(out, "Originated prefixes:\n  10.244.1.0/24\n  fd00:244:1::/64\n") {
		t.Errorf("originated prefixes missing:\n%s", out)
	}
}

func TestPeersCommandPrintsOnlyPeers(t *testing.T) {
	path := serveFake(t, &fakeDaemon{status: liveStatus()})
	out, err := runCLI(t, nil, "peers", "--socket", path)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	lineWith(t, out, "10.0.0.254")
	if !strings.HasPrefix(out, "IPv4 peers:\n") || strings.Contains(out, "podrouted is running") || strings.Contains(out, "Originated") {
		t.Errorf("peers printed more than the peer tables:\n%s", out)
	}
}

func TestRoutesCommandJSON(t *testing.T) {
	want := &api.ListRoutesResponse{Routes: []*api.Route{
		{Prefix: "10.244.2.0/24", NextHops: []string{"10.0.0.2"}, Kind: "learned", InKernel: true},
		{Prefix: "10.244.1.0/24", Kind: "blackhole", InKernel: false, Error: "netlink: operation not permitted"},
	}}
	path := serveFake(t, &fakeDaemon{routes: want})
	out, err := runCLI(t, nil, "--socket", path, "-o", "json", "routes")
	if err != nil {
		t.Fatalf("routes -o json: %v", err)
	}
	got := &api.ListRoutesResponse{}
	if err := protojson.Unmarshal([]byte(out), got); err != nil {
		t.Fatalf("output does not parse as the response: %v\n%s", err, out)
	}
	if !proto.Equal(got, want) {
		t.Errorf("routes JSON = %v, want %v", got, want)
	}
}

func TestPeersCommandJSON(t *testing.T) {
	path := serveFake(t, &fakeDaemon{status: liveStatus()})
	out, err := runCLI(t, nil, "--socket", path, "peers", "--output", "json")
	if err != nil {
		t.Fatalf("peers --output json: %v", err)
	}
	got := &api.GetStatusResponse{}
	if err := protojson.Unmarshal([]byte(out), got); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out)
	}
	want := &api.GetStatusResponse{Peers: liveStatus().GetPeers()}
	// Compare peers without their ages, which depend on the clock.
	for _, p := range append(got.Peers, want.Peers...) {
		p.StateSinceUnix = 0
	}
	if !proto.Equal(got, want) {
		t.Errorf("peers JSON = %v, want only the peers %v", got, want)
	}
}

func TestRoutesCommandTable(t *testing.T) {
	path := serveFake(t, &fakeDaemon{routes: &api.ListRoutesResponse{Routes: []*api.Route{
		{Prefix: "10.244.2.0/24", NextHops: []string{"10.0.0.2"}, Kind: "learned", InKernel: true},
	}}})
	out, err := runCLI(t, nil, "--socket", path, "routes")
	if err != nil {
		t.Fatalf("routes: %v", err)
	}
	if got := strings.Fields(lineWith(t, out, "10.244.2.0/24")); strings.Join(got, " ") != "10.244.2.0/24 10.0.0.2 learned yes" {
		t.Errorf("route line fields = %q", got)
	}
}

func TestSocketFromEnvironment(t *testing.T) {
	path := serveFake(t, &fakeDaemon{status: liveStatus()})
	out, err := runCLI(t, map[string]string{socketEnv: path}, "peers")
	if err != nil {
		t.Fatalf("peers with %s=%s: %v", socketEnv, path, err)
	}
	lineWith(t, out, "10.0.0.254")
}

func TestUnreachableSocketNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody-home.sock")
	for _, args := range [][]string{{"status"}, {"peers"}, {"routes"}} {
		_, err := runCLI(t, nil, append([]string{"--socket", path}, args...)...)
		if err == nil {
			t.Fatalf("%s against a missing socket succeeded", args[0])
		}
		msg := err.Error()
		for _, s := range []string{"cannot reach podrouted at " + path, "is podrouted running on this node?", "--socket", socketEnv} {
			if !strings.Contains(msg, s) {
				t.Errorf("%s error %q lacks %q", args[0], msg, s)
			}
		}
	}
}

func TestDaemonErrorNamesSocket(t *testing.T) {
	path := serveFake(t, &fakeDaemon{err: status.Error(codes.Internal, "speaker not started")})
	_, err := runCLI(t, nil, "--socket", path, "status")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "speaker not started") {
		t.Errorf("error = %v, want one naming %s and the daemon's message", err, path)
	}
}

func TestInvalidFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml", "status"}, `invalid --output "yaml"`},
		{[]string{"--timeout", "0s", "status"}, "invalid --timeout"},
		{[]string{"status", "extra"}, "unknown command"},
	} {
		_, err := runCLI(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	out, err := runCLI(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if out != "podroute "+version+"\n" {
		t.Errorf("version printed %q", out)
	}
}

func TestDefaultSocket(t *testing.T) {
	if got := newRootCommand(func(string) string { return "" }).PersistentFlags().Lookup("socket").DefValue; got != defaultSocket {
		t.Errorf("default --socket = %q, want %q", got, defaultSocket)
	}
}

// routes --summary asks the daemon for the counts only and prints them.
func TestRoutesSummary(t *testing.T) {
	d := &fakeDaemon{routes: &api.ListRoutesResponse{Summary: &api.RouteSummary{
		Learned: 100000, Blackholes: 2, InKernel: 99999, Refused: 3, Originated: 2}}}
	path := serveFake(t, d)
	out, err := runCLI(t, nil, "--socket", path, "routes", "--summary")
	if err != nil {
		t.Fatalf("routes --summary: %v", err)
	}
	if !d.summaryOnly {
		t.Error("routes --summary did not ask for the summary only")
	}
	for _, want := range []string{"learned routes:   100000 (3 not in the kernel as wanted)", "own blackholes:   2", "refused next hop: 3", "originated:       2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPolicyCommand(t *testing.T) {
	d := &fakeDaemon{policy: &api.GetPolicyResponse{Enforced: true, Synced: true,
		Pods: []*api.PolicyPod{
			{Pod: "default/web-1", Addresses: []string{"10.244.1.5", "fd00:244:0:1::5"}, Ingress: []string{"default/deny-all", "default/allow-frontend"}, IngressRules: 7},
			{Pod: "default/client", Addresses: []string{"10.244.1.6"}},
		},
		Problems: []*api.PolicyProblem{{Kind: "NetworkPolicy", Object: "default/odd", Reason: "UnknownPortName", Message: "port name \"metrics\" matches nothing"}},
	}}
	path := serveFake(t, d)
	out, err := runCLI(t, nil, "--socket", path, "policy")
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	if f := strings.Fields(lineWith(t, out, "default/web-1")); strings.Join(f, " ") != "default/web-1 10.244.1.5,fd00:244:0:1::5 default/deny-all,default/allow-frontend 7 (open) 0" {
		t.Errorf("pod line fields = %q", f)
	}
	lineWith(t, out, "UnknownPortName")
	d.policy = &api.GetPolicyResponse{}
	out, _ = runCLI(t, nil, "--socket", path, "policy")
	if !strings.Contains(out, "not enforced") {
		t.Errorf("static mode output: %q", out)
	}
}
