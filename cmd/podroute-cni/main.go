package main

import (
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podroute/podroute/cni"
)

// buildVersion is set at build time with -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = "dev"

func init() {
	// Namespace switches apply to one OS thread: keep main on the thread
	// it started on (in the node's namespace), as the reference plugins do.
	runtime.LockOSThread()
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports(cni.SupportedVersions...), "podroute-cni "+buildVersion+": routed pod networking for podroute")
}
