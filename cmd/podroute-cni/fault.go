package main

import (
	"os"
	"syscall"
)

// killAtEnv names a stage at which the plugin SIGKILLs itself. TEST ONLY:
// the crash tests set it to prove that a plugin killed half-way through ADD
// (by the OOM killer, a node reboot, a runtime timeout) leaves no duplicate
// address and no torn record, and that GC cleans up after it. Stages:
// after-alloc (addresses recorded, no link yet), after-veth, after-addr,
// after-route (see cni.Stage*). Nothing sets it in production.
const killAtEnv = "PODROUTE_CNI_TEST_KILL_AT"

// faultPoint kills the process if the test asked for a crash at stage.
func faultPoint(stage string) {
	if os.Getenv(killAtEnv) != stage {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; never go on past the point
}
