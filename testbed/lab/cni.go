package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/podroute/podroute/testbed/topology"
)

// The lab plugs pods in with podroute-cni exactly as kubelet would: the
// plugin runs in the node's namespace, with CNI_* in its environment and
// the network configuration on stdin; the configuration is the one
// podrouted wrote into the node's CNI directory.

func (l *Lab) cniDir(node string) string  { return filepath.Join(l.nodeDir(node), "cni") }
func (l *Lab) ipamDir(node string) string { return filepath.Join(l.nodeDir(node), "ipam") }

// cniNetworkConfig waits for podrouted's conflist on node and returns the
// podroute-cni entry as kubelet passes it: the plugin's own config plus
// the list's name and cniVersion.
func (l *Lab) cniNetworkConfig(ctx context.Context, node string) ([]byte, error) {
	path := filepath.Join(l.cniDir(node), "10-podroute.conflist")
	deadline := time.Now().Add(30 * time.Second)
	var data []byte
	for {
		var err error
		if data, err = os.ReadFile(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("podrouted on %s wrote no CNI configuration at %s within 30s (see %s)", node, path, l.NodeLog(node))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var list struct {
		Name       string           `json:"name"`
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil || len(list.Plugins) == 0 {
		return nil, fmt.Errorf("CNI configuration %s: %v", path, err)
	}
	conf := list.Plugins[0]
	conf["name"], conf["cniVersion"] = list.Name, list.CNIVersion
	return json.Marshal(conf)
}

// runCNI invokes podroute-cni for pod with command (ADD, DEL, CHECK).
func (l *Lab) runCNI(ctx context.Context, command, node string, pod *topology.PodPlan, conf []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.nsName(node), filepath.Join(l.opts.BinDir, "podroute-cni"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+l.RunID()+"-"+pod.Name,
		"CNI_NETNS=/run/netns/"+l.nsName(pod.Name),
		"CNI_IFNAME=eth0",
		"CNI_PATH="+l.opts.BinDir,
	)
	cmd.Stdin = bytes.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("podroute-cni %s for pod %s: %v: %s%s", command, pod.Name, err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// addPodCNI creates pod's namespace and runs CNI ADD; the pod's addresses
// are what the plugin allocated.
func (l *Lab) addPodCNI(ctx context.Context, n *topology.NodePlan, pod *topology.PodPlan) error {
	if _, err := l.createNS(pod.Name); err != nil {
		return err
	}
	conf, err := l.cniNetworkConfig(ctx, n.Name)
	if err != nil {
		return err
	}
	out, err := l.runCNI(ctx, "ADD", n.Name, pod, conf)
	if err != nil {
		return err
	}
	var result struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &result); err != nil {
		return fmt.Errorf("podroute-cni ADD for pod %s: result %q: %w", pod.Name, out, err)
	}
	pod.Addrs = nil
	for _, ip := range result.IPs {
		p, err := netip.ParsePrefix(ip.Address)
		if err != nil {
			return fmt.Errorf("podroute-cni ADD for pod %s: address %q: %w", pod.Name, ip.Address, err)
		}
		pod.Addrs = append(pod.Addrs, p.Addr())
	}
	if len(pod.Addrs) == 0 {
		return fmt.Errorf("podroute-cni ADD for pod %s returned no address: %s", pod.Name, out)
	}
	addrs := make([]string, len(pod.Addrs))
	for i, a := range pod.Addrs {
		addrs[i] = a.String()
	}
	return l.state.update(func(s *State) {
		if s.PodAddrs == nil {
			s.PodAddrs = map[string][]string{}
		}
		s.PodAddrs[pod.Name] = addrs
	})
}

// deletePodsCNI runs CNI DEL for every pod, as kubelet does when pods go
// away; errors are collected, not fatal (DEL is idempotent).
func (l *Lab) deletePodsCNI(ctx context.Context) error {
	var errs []error
	for _, n := range l.Plan.Nodes {
		conf, err := l.cniNetworkConfig(ctx, n.Name)
		if err != nil {
			continue
		}
		for i := range n.PodPlans {
			if _, err := l.runCNI(ctx, "DEL", n.Name, &n.PodPlans[i], conf); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// IPAMDir is node's podroute-cni IPAM store (ipam.ReadState reads it).
func (l *Lab) IPAMDir(node string) string { return l.ipamDir(node) }
