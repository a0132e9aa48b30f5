package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/ipam"
)

// openStore opens the IPAM store the config names.
func openStore(conf *cni.NetConf) (*ipam.Store, error) {
	s, err := ipam.Open(conf.DataDir, conf.Pools, ipam.WithReserved(conf.Reserved...))
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return s, nil
}

func attachmentOf(args *skel.CmdArgs) ipam.Attachment {
	return ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, err := cni.ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	want, err := conf.RequestedIPs(args.Args)
	if err != nil {
		return err
	}
	// Checked before allocating, so a bad CNI_NETNS costs nothing.
	if !cni.NetnsExists(args.Netns) {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q does not exist", args.Netns), "")
	}
	// skel makes the same check, but only after ADD has wired the node
	// itself and printed its result (then its error: two documents).
	if own, err := cni.IsOwnNetns(args.Netns); err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q: %v", args.Netns, err), "")
	} else if own {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %q is podroute-cni's own network namespace (the node's): a pod must have a namespace of its own", args.Netns), "")
	}
	mtu := conf.MTU
	if mtu == 0 {
		if mtu, _, err = cni.UplinkMTU(); err != nil {
			return err
		}
	}
	store, err := openStore(conf)
	if err != nil {
		return err
	}
	att := attachmentOf(args)
	alloc, err := store.Allocate(ipam.Request{Attachment: att, Netns: args.Netns, Want: want})
	if err != nil {
		var exhausted *ipam.ExhaustedError
		if errors.As(err, &exhausted) {
			return types.NewError(cni.ErrPoolExhausted, err.Error(), "")
		}
		return err
	}
	faultPoint("after-alloc")
	wired := false
	defer func() {
		// A failed ADD leaves nothing behind: Setup removes the links it
		// made when it fails itself; if a later step failed, remove them
		// here, then give the addresses back.
		if err == nil {
			return
		}
		if wired {
			if terr := cni.Teardown(cni.HostVethName(args.ContainerID, args.IfName)); terr != nil {
				err = fmt.Errorf("%w (and removing the pod's veth failed: %v)", err, terr)
			}
		}
		if _, _, rerr := store.Release(att); rerr != nil {
			err = fmt.Errorf("%w (and releasing %v failed: %v)", err, alloc.Addrs, rerr)
		}
	}()
	ifs, err := cni.Setup(cni.Attachment{
		ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Addrs: alloc.Addrs, MTU: mtu,
	}, faultPoint)
	if err != nil {
		return err
	}
	wired = true
	// In the version the config asks for (1.0.0 for containerd 1.6 and
	// 1.7, which refuse a 1.1.0 result). Conversion happens before
	// anything is printed, so a failure prints only skel's error.
	return types.PrintResult(buildResult(args, conf, alloc.Addrs, ifs), conf.CNIVersion)
}

// buildResult describes what ADD made: the two ends of the veth (the pod's
// at index 1), one address per family on the pod's end with its gateway,
// and the pod's routes.
func buildResult(args *skel.CmdArgs, conf *cni.NetConf, addrs []netip.Addr, ifs cni.Interfaces) *current.Result {
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: ifs.Host.Name, Mac: ifs.Host.HardwareAddr.String(), Mtu: ifs.Host.MTU},
			{Name: ifs.Pod.Name, Mac: ifs.Pod.HardwareAddr.String(), Mtu: ifs.Pod.MTU, Sandbox: args.Netns},
		},
		DNS: conf.DNS,
	}
	for _, a := range addrs {
		gw, dflt := cni.GatewayV4, "0.0.0.0/0"
		if a.Is6() {
			gw, dflt = cni.GatewayV6, "::/0"
		}
		r.IPs = append(r.IPs, &current.IPConfig{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())},
			Gateway:   gw.AsSlice(),
		})
		if a.Is4() {
			r.Routes = append(r.Routes, &types.Route{
				Dst: net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: current.Int(253), // link
			})
		}
		_, dst, _ := net.ParseCIDR(dflt)
		r.Routes = append(r.Routes, &types.Route{Dst: *dst, GW: gw.AsSlice()})
	}
	return r
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := cni.ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	// Links first, addresses second: an address must not be handed out
	// again while a route to its old pod still exists. A pod whose
	// namespace is gone took its veth with it, so a missing link, a missing
	// namespace or an unknown container are all success.
	if err := cni.Teardown(cni.HostVethName(args.ContainerID, args.IfName)); err != nil {
		return err
	}
	store, err := openStore(conf)
	if err != nil {
		return err
	}
	_, _, err = store.Release(attachmentOf(args))
	return err
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := cni.ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.RawPrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult in the network config (the result of ADD)", "")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	store, err := openStore(conf)
	if err != nil {
		return err
	}
	alloc, ok, err := store.Get(attachmentOf(args))
	if err != nil {
		return err
	}
	if !ok {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("CHECK %s/%s: no IPAM allocation for this container and interface", args.ContainerID, args.IfName), "")
	}
	var diffs []string
	var prevAddrs []netip.Addr
	mtu := 0
	for _, ipc := range prev.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			prevAddrs = append(prevAddrs, a.Unmap())
		}
	}
	for _, iface := range prev.Interfaces {
		if iface.Sandbox != "" && iface.Name == args.IfName {
			mtu = iface.Mtu
		}
	}
	if !sameAddrs(prevAddrs, alloc.Addrs) {
		diffs = append(diffs, fmt.Sprintf("prevResult has addresses %v but the IPAM store holds %v for this attachment", prevAddrs, alloc.Addrs))
	}
	err = cni.Check(cni.Attachment{
		ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Addrs: alloc.Addrs, MTU: mtu,
	})
	var ce *cni.CheckError
	if errors.As(err, &ce) {
		diffs = append(diffs, ce.Diffs...)
	} else if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return types.NewError(types.ErrInternal, (&cni.CheckError{Attachment: args.ContainerID + "/" + args.IfName, Diffs: diffs}).Error(), "")
	}
	return nil
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

func cmdStatus(args *skel.CmdArgs) error {
	notAvailable := func(format string, a ...any) error {
		return types.NewError(cni.ErrPluginNotAvailable, "podroute-cni cannot add pods: "+fmt.Sprintf(format, a...), "")
	}
	conf, err := cni.ParseNetConf(args.StdinData)
	if err != nil {
		return notAvailable("%v", err)
	}
	store, err := ipam.Open(conf.DataDir, conf.Pools, ipam.WithReserved(conf.Reserved...))
	if err != nil {
		return notAvailable("%v", err)
	}
	if err := store.CheckWritable(); err != nil {
		return notAvailable("%v", err)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, err := cni.ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	store, err := openStore(conf)
	if err != nil {
		return err
	}
	valid, err := validAttachments(args.StdinData, conf)
	if err != nil {
		return err
	}
	keep := map[ipam.Attachment]bool{}
	for _, v := range valid {
		keep[ipam.Attachment{ContainerID: v.ContainerID, IfName: v.IfName}] = true
	}
	st, err := store.List()
	if err != nil {
		return err
	}
	// Unwire before releasing, as DEL does; an attachment whose link cannot
	// be removed keeps its addresses until the next GC. Only the stale
	// attachments seen here are released, never one an ADD running at the
	// same time has just recorded.
	var stale []ipam.Attachment
	var failed []string
	for _, a := range st.Allocations {
		if keep[a.Attachment()] {
			continue
		}
		if err := cni.Teardown(cni.HostVethName(a.ContainerID, a.IfName)); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", a.Attachment(), err))
			continue
		}
		stale = append(stale, a.Attachment())
	}
	if _, err := store.ReleaseAll(stale); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("GC kept %d stale attachment(s) whose links could not be removed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// validAttachments returns the attachments GC must keep. The list must be
// there (it may be empty): a config without it is a mistake, and reading it
// as "nothing is valid" would unwire every pod on the node. Early 1.1
// runtimes wrote the key as "cni.dev/attachments" (CNI issue 1101).
func validAttachments(stdin []byte, conf *cni.NetConf) ([]types.GCAttachment, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	if _, ok := raw["cni.dev/valid-attachments"]; ok {
		return conf.ValidAttachments, nil
	}
	legacy, ok := raw["cni.dev/attachments"]
	if !ok {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			"GC needs cni.dev/valid-attachments (the attachments to keep; [] for none): refusing to release every allocation on the node", "")
	}
	var out []types.GCAttachment
	if err := json.Unmarshal(legacy, &out); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf(`network config field "cni.dev/attachments": %v`, err), "")
	}
	return out, nil
}
