package api

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// fakeStatus answers GetStatus with a fixed response.
type fakeStatus struct {
	UnimplementedStatusServer
	resp *GetStatusResponse
}

func (f *fakeStatus) GetStatus(context.Context, *GetStatusRequest) (*GetStatusResponse, error) {
	return f.resp, nil
}

// listenForTest opens a socket with Listen and closes it when the test ends.
func listenForTest(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestListenCreatesOwnerOnlySocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "podroute")
	path := filepath.Join(dir, "podrouted.sock")
	listenForTest(t, path)

	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		t.Errorf("%s has type %v, want a socket", path, info.Mode().Type())
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
	dirInfo, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !dirInfo.IsDir() {
		t.Errorf("%s is not a directory", dir)
	}
	// The private directory the socket was bound in must be gone.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "podrouted.sock" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("socket directory holds %v, want only podrouted.sock", names)
	}
}

func TestListenRefusesSocketOfLiveDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	listenForTest(t, path)

	ln, err := Listen(path)
	if err == nil {
		ln.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), "another podrouted is running") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say another podrouted is running on %s", err, path)
	}
	// The live daemon's socket must still be there and still answer.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("live socket broken by the refused Listen: %v", err)
	}
	conn.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	// A daemon that died leaves its socket file behind with nobody listening.
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file not left behind: %v", err)
	}

	listenForTest(t, path)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("new socket does not answer: %v", err)
	}
	conn.Close()
}

func TestListenLeavesNonSocketAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path)
	if err == nil {
		ln.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q does not say the path is not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestCloseRemovesOnlyItsOwnSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	old, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Addr().String(); got != path {
		t.Errorf("Addr() = %s, want %s", got, path)
	}
	// Another daemon takes the path over (here after the file vanished);
	// the old one shutting down must not delete the new socket.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	listenForTest(t, path)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("old listener's Close removed the new socket: %v", err)
	}

	// A listener that still owns the path removes it.
	other := filepath.Join(filepath.Dir(path), "other.sock")
	ln, err := Listen(other)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := os.Lstat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still present after Close: %v", err)
	}
}

func TestGetStatusRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.sock")
	ln := listenForTest(t, path)
	want := &GetStatusResponse{
		Node:               &Node{Name: "node-a", RouterId: "10.0.0.1", Asn: 65001, Synced: true},
		Peers:              []*Peer{{Address: "10.0.0.254", Asn: 65000, State: "Established", Accepted: 12}},
		OriginatedPrefixes: []string{"10.244.1.0/24"},
	}
	srv := grpc.NewServer()
	RegisterStatusServer(srv, &fakeStatus{resp: want})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := NewStatusClient(conn).GetStatus(ctx, &GetStatusRequest{})
	if err != nil {
		t.Fatalf("GetStatus: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("GetStatus over the socket = %v, want %v", got, want)
	}
}

func TestDialNamesMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := Dial(ctx, path)
	if err == nil {
		conn.Close()
		t.Fatal("Dial to a missing socket succeeded")
	}
	if !strings.Contains(err.Error(), path) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not name %s or lost the cause", err, path)
	}
}
