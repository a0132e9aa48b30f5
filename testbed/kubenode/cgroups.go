package kubenode

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupMounts returns the mount points of the machine's cgroup
// hierarchies (v1 and the unified v2 one) under /sys/fs/cgroup, from our
// own mount table.
func cgroupMounts() (v1 []string, unified string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		mp, fstype := fields[4], fields[sep+1]
		if !strings.HasPrefix(mp, "/sys/fs/cgroup") {
			continue
		}
		switch fstype {
		case "cgroup":
			v1 = append(v1, mp)
		case "cgroup2":
			unified = mp
		}
	}
	sort.Strings(v1)
	return v1, unified, sc.Err()
}

// cgroupDirs returns root's directory in every hierarchy: the v1 ones
// first, the unified one (kubelet and runc create it there in hybrid mode)
// last.
func cgroupDirs(root string) ([]string, error) {
	v1, unified, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	if len(v1) == 0 {
		return nil, errors.New("kubenode: no cgroup v1 hierarchy mounted under /sys/fs/cgroup (kubelet's failCgroupV1: false setup needs the v1/hybrid layout)")
	}
	var out []string
	for _, mp := range v1 {
		out = append(out, filepath.Join(mp, root))
	}
	if unified != "" && unified != "/sys/fs/cgroup" {
		out = append(out, filepath.Join(unified, root))
	}
	return out, nil
}

// createCgroups makes root in every v1 hierarchy (kubelet refuses a
// cgroupRoot that does not exist), with cpuset.cpus and cpuset.mems copied
// from the parent (a new cpuset cgroup starts empty and takes no task).
// The unified directory is left to kubelet.
func createCgroups(dirs []string) error {
	for _, d := range dirs {
		if strings.HasPrefix(d, "/sys/fs/cgroup/unified/") {
			continue
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("kubenode: cgroup %s: %w", d, err)
		}
		if strings.HasPrefix(d, "/sys/fs/cgroup/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return fmt.Errorf("kubenode: cgroup %s/%s: %w", d, f, err)
				}
			}
		}
	}
	return nil
}

// inCgroups reports whether pid is in one of the cgroup trees (by its
// /proc/PID/cgroup lines, so no cgroup.procs needs reading).
func inCgroups(pid int, dirs []string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID:CONTROLLERS:PATH
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, d := range dirs {
			rel := "/" + filepath.Base(d)
			if parts[2] == rel || strings.HasPrefix(parts[2], rel+"/") {
				return true
			}
		}
	}
	return false
}

// removeCgroups removes each tree depth-first, retrying while the kernel
// still counts exiting tasks. A tree that is already gone is fine.
func removeCgroups(dirs []string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var errs []error
		for _, root := range dirs {
			if err := rmdirTree(root); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errs...)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func rmdirTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Deepest first.
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, p := range dirs {
		if err := syscall.Rmdir(p); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("kubenode: rmdir %s: %w", p, err)
		}
	}
	return nil
}

// varLibCNI is libcni's cache directory (results of ADD, for DEL and CHECK).
// containerd 1.6 has no setting for it, so each node mounts a tmpfs over it
// in its private mount namespace; the mount point must exist. If it did not,
// a node creates it with varLibCNIMarker inside (hidden from the nodes by
// their tmpfs), so that whichever node stops last, or Cleanup after a crash,
// knows the directory is the nodes' own and removes it.
const (
	varLibCNI       = "/var/lib/cni"
	varLibCNIMarker = ".created-by-podroute-kubenode"
)

// ensureVarLibCNI creates /var/lib/cni, marked as the nodes' own, if it
// is missing.
func ensureVarLibCNI() error { return ensureMarkedDir(varLibCNI, varLibCNIMarker) }

// removeVarLibCNI removes /var/lib/cni if the nodes made it and no node's
// holder runs any more (another node may still use it as a mount point).
// Every node's teardown calls it, so the last to stop removes it, whichever
// node made it (nodes start in parallel).
func removeVarLibCNI() {
	for _, pid := range pids() {
		if strings.Contains(cmdline(pid), holderMarker) {
			return
		}
	}
	removeMarkedDir(varLibCNI, varLibCNIMarker)
}

// ensureMarkedDir creates dir with an empty file named marker inside if
// dir is missing. The marker, not any one caller's state, records that the
// directory is ours; an existing directory is left as it is, unmarked.
func ensureMarkedDir(dir, marker string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another node made it at the same moment
		}
		return fmt.Errorf("kubenode: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, marker), nil, 0o644); err != nil {
		// Unmarked, nothing would ever remove it: take it back now.
		return errors.Join(fmt.Errorf("kubenode: %w", err), os.Remove(dir))
	}
	return nil
}

// removeMarkedDir removes dir if it holds nothing but marker: a directory
// that was there before us has no marker, and one that holds anything
// else is in use.
func removeMarkedDir(dir, marker string) {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != marker {
		return
	}
	os.Remove(filepath.Join(dir, marker))
	syscall.Rmdir(dir)
}

// PodPID returns a process of the pod with UID podUID on the node whose
// kubelet runs with cgroupRoot (kubelet's cgroupfs layout:
// ROOT/kubepods[/besteffort|/burstable]/podUID/CONTAINER), so that a caller
// can enter the pod's network namespace (/proc/PID/ns/net) from the
// machine without exec through the API server.
func PodPID(cgroupRoot, podUID string) (int, error) {
	dirs, err := cgroupDirs(cgroupRoot)
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		if strings.HasPrefix(d, "/sys/fs/cgroup/unified/") {
			continue
		}
		for _, pattern := range []string{"/kubepods/pod" + podUID, "/kubepods/*/pod" + podUID} {
			found, _ := filepath.Glob(d + pattern)
			for _, pod := range found {
				pid := 0
				filepath.WalkDir(pod, func(path string, e fs.DirEntry, err error) error {
					if err != nil || pid != 0 || e.Name() != "cgroup.procs" {
						return nil
					}
					b, _ := os.ReadFile(path)
					for _, f := range strings.Fields(string(b)) {
						if n, err := strconv.Atoi(f); err == nil && isRunning(n) {
							pid = n
							return fs.SkipAll
						}
					}
					return nil
				})
				if pid != 0 {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("kubenode: no running process of pod %s under cgroup root %s", podUID, cgroupRoot)
}
