package nft

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podroute/podroute/testbed/netns"
)

// SCTP with real associations, where the kernel has SCTP sockets (this
// one may not: then it skips; the SCTP rules still load in
// TestKernelEnforcesPolicies).
func TestKernelSCTP(t *testing.T) {
	skipUnlessRoot(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	if err != nil {
		t.Skipf("skipping: this kernel has no SCTP sockets: %v", err)
	}
	unix.Close(fd)
	pods := append([]labPod{}, semanticsPods[:3]...)
	l := newLab(t, pods)
	for _, p := range []int{3868, 3869} {
		fd := sctpListen(t, l.pods["web"], p)
		l.c.Add("sctp listener", func() error { return unix.Close(fd) })
	}
	pol := netpol("ns-a", "sctp", map[string]string{"app": "web"}, ingressOnly...)
	pol.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
		port(corev1.ProtocolSCTP, intstr.FromString("diameter"))}}}
	pods[0].ports = append([]corev1.ContainerPort{{Name: "diameter", ContainerPort: 3868, Protocol: corev1.ProtocolSCTP}}, pods[0].ports...)
	l.sync(input(pods, pol))
	client := pods[2]
	for _, fam := range []int{4, 6} {
		if err := sctpConnect(l.remote, client.addr(fam), pods[0].addr(fam), 3868); err != nil {
			t.Errorf("IPv%d SCTP to the named port: %v, want an association", fam, err)
		}
		if err := sctpConnect(l.remote, client.addr(fam), pods[0].addr(fam), 3869); err == nil {
			t.Errorf("IPv%d SCTP to another port: associated, want dropped", fam)
		}
	}
}

func sockaddr(a netip.Addr, port int) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Port: port, Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: port, Addr: a.As16()}
}

func sctpListen(t *testing.T, ns *netns.Namespace, port int) int {
	var fd int
	must(t, ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
			return err
		}
		return unix.Listen(fd, 16)
	}))
	return fd
}

// sctpConnect sets up an association from src to dst, within probeTimeout.
func sctpConnect(ns *netns.Namespace, src, dst netip.Addr, port int) error {
	return ns.Do(func() error {
		domain := unix.AF_INET
		if dst.Is6() {
			domain = unix.AF_INET6
		}
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, unix.IPPROTO_SCTP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, sockaddr(src, 0)); err != nil {
			return err
		}
		if err := unix.Connect(fd, sockaddr(dst, port)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return err
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(probeTimeout/time.Millisecond))
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("timed out")
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	})
}
