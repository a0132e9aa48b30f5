package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// probeTimeout bounds the check for a live daemon on an existing socket. A
// daemon that is alive accepts at once (the kernel completes a unix connect
// without the server's help while its backlog has room), so a short wait is
// enough and a wedged file system cannot hang start-up.
const probeTimeout = time.Second

// maxResponseBytes lets the CLI read a full route table. gRPC's default
// receive limit is 4 MiB, which a ListRoutes answer passes at roughly 100k
// routes, the size the daemon is designed for.
const maxResponseBytes = 256 << 20

// Listen opens the status API's unix socket at path, readable and writable
// by its owner only (mode 0600).
//
// It creates the parent directory (0755) if needed. An existing socket file
// is removed only when nothing answers on it, the leftover of a daemon that
// died; if a daemon answers, Listen fails rather than take the socket away
// from it. Anything at path that is not a socket is left alone and reported.
//
// The socket is never reachable with a wider mode, even for an instant: it is
// bound inside a fresh private (0700) directory, chmodded to 0600 there, and
// only then hard-linked to path. The other way to get that, setting the
// umask around the bind, changes the mode of every file that any other
// goroutine in the daemon creates at the same moment. link(2) also refuses to
// replace an existing file, so a daemon that starts between the check above
// and the link keeps its socket and this call fails.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("status socket path is empty")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create status socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}

	private, err := os.MkdirTemp(dir, ".sock")
	if err != nil {
		return nil, fmt.Errorf("create private directory for status socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", path, err)
	}
	// The bound name is removed with the private directory; the listener
	// must not try to unlink it again on Close, nor ever unlink path, which
	// may by then belong to another daemon (see socketListener.Close).
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("restrict status socket mode: %w", err))
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(fmt.Errorf("status socket %s appeared while starting: another podrouted is running on that socket", path))
		}
		return fail(fmt.Errorf("publish status socket %s: %w", path, err))
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("stat status socket %s: %w", path, err))
	}
	return &socketListener{UnixListener: ln, path: path, file: info}, nil
}

// removeStaleSocket clears path for a new socket, refusing when a daemon
// still answers there or when path is something other than a socket.
func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check status socket %s: %w", path, err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("status socket path %s exists and is not a socket (%s); remove it or choose another path", path, info.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another podrouted is running on socket %s", path)
	}
	// Only "refused" proves that nobody listens: any other failure (for
	// example no permission to connect) says nothing about a live daemon,
	// and removing its socket would make it unreachable.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check whether status socket %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale status socket %s: %w", path, err)
	}
	return nil
}

// socketListener is the listener Listen returns. It reports the published
// path as its address and removes that path on Close.
type socketListener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket as published, to recognise it on Close
}

func (l *socketListener) Addr() net.Addr {
	return &net.UnixAddr{Name: l.path, Net: "unix"}
}

// Close stops listening and removes the socket file, but only if path is
// still this listener's socket: a daemon that took over a socket it found
// dead must not have it deleted by the old one shutting down.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if info, statErr := os.Lstat(l.path); statErr == nil && os.SameFile(info, l.file) {
		os.Remove(l.path)
	}
	return err
}

// Dial connects to the status API on the unix socket at path.
//
// The connection uses no transport security: it never leaves the node, and
// the socket's file mode decides who may use it. Dial first connects to the
// socket once, within ctx, so that a missing or dead daemon is reported here
// with the path and the system's reason, not later as a vague RPC failure.
func Dial(ctx context.Context, path string) (*grpc.ClientConn, error) {
	// gRPC's "unix://" form takes an absolute path only.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("status socket path %s: %w", path, err)
	}
	var d net.Dialer
	probe, err := d.DialContext(ctx, "unix", abs)
	if err != nil {
		return nil, fmt.Errorf("cannot reach podrouted at %s: %w", path, err)
	}
	probe.Close()

	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("status API client for %s: %w", path, err)
	}
	return conn, nil
}
