package bgpbench

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podroute/podroute/testbed/netns"
)

// pollSocket is a non-blocking socket opened inside a namespace and read
// through the Go netpoller: a reader drains everything queued, then parks
// until more arrives, instead of a blocking system call per message.
type pollSocket struct {
	f    *os.File
	rc   syscall.RawConn
	done chan struct{}
}

func openPollSocket(ns *netns.Namespace, domain, typ, proto int, setup func(fd int) error) (*pollSocket, error) {
	var fd int
	err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto); err != nil {
			return err
		}
		if err := setup(fd); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s := &pollSocket{f: os.NewFile(uintptr(fd), "socket"), done: make(chan struct{})}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

// run calls recv while it succeeds and waits for readiness on EAGAIN,
// until the socket is closed or recv fails otherwise.
func (s *pollSocket) run(recv func(fd int) error) {
	defer close(s.done)
	for {
		var failed error
		err := s.rc.Read(func(fd uintptr) bool {
			for {
				switch err := recv(int(fd)); {
				case errors.Is(err, unix.EAGAIN):
					return false
				case errors.Is(err, unix.EINTR):
				case err != nil:
					failed = err
					return true
				}
			}
		})
		if err != nil || failed != nil {
			return
		}
	}
}

func (s *pollSocket) close() error {
	err := s.f.Close()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		return errors.Join(err, errors.New("socket reader did not stop"))
	}
	return err
}
