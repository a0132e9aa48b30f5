package ipam

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lock takes the store's exclusive lock and returns the function that
// releases it.
//
// flock(2) locks belong to the open file description, so the kernel drops
// the lock when the holder dies, SIGKILL included: a killed plugin never
// leaves the store locked. The lock file is never removed; removing it would
// let two processes lock two different files of the same name.
func (s *Store) lock() (func(), error) {
	path := filepath.Join(s.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam: opening lock %s: %w", path, err)
	}
	// A blocking flock cannot be interrupted from Go, so it runs on its own
	// goroutine; on timeout the goroutine drops the lock as soon as it gets
	// it.
	got := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if err != unix.EINTR {
				got <- err
				return
			}
		}
	}()
	timer := time.NewTimer(s.lockWait)
	defer timer.Stop()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ipam: locking %s: %w", path, err)
		}
		return func() { f.Close() }, nil // closing the file releases the lock
	case <-timer.C:
		go func() {
			<-got
			f.Close()
		}()
		return nil, fmt.Errorf("ipam: store %s stayed locked for %s: another podroute-cni is stuck holding %s", s.dir, s.lockWait, path)
	}
}
