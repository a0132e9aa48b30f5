// Command pause is the lab's sandbox ("infra") container: it holds a pod's
// namespaces and does nothing else. Like Kubernetes' own pause it exits on
// SIGINT or SIGTERM and reaps zombies, since it is PID 1 of the pod when the
// pod shares its process namespace. It is built static (CGO_ENABLED=0) by
// package images and tagged as containerd's sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			// Reap every exited child; -1 waits for any, WNOHANG returns at once.
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
