package kubenode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// DialIn returns a DialContext that opens connections from inside the
// network namespace at nsPath. The socket stays in that namespace after
// the dial, so the returned connection can be used from any goroutine.
func DialIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// A thread that cannot be switched back stays locked and is
			// destroyed with this goroutine rather than reused.
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, err}
				return
			}
			defer orig.Close()
			target, err := netns.GetFromPath(nsPath)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("kubenode: namespace %s: %w", nsPath, err)}
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, fmt.Errorf("kubenode: entering %s: %w", nsPath, err)}
				return
			}
			var d net.Dialer
			c, derr := d.DialContext(ctx, network, addr)
			if err := netns.Set(orig); err != nil {
				if c != nil {
					c.Close()
				}
				ch <- result{nil, errors.Join(derr, fmt.Errorf("kubenode: leaving %s: %w", nsPath, err))}
				return
			}
			runtime.UnlockOSThread()
			ch <- result{c, derr}
		}()
		r := <-ch
		return r.c, r.err
	}
}
