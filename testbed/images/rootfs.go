package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// MergedUsr adds the top-level links of a merged-/usr system (Debian 12):
// /bin, /sbin, /lib, /lib64 point into /usr. Host files are copied under
// their real /usr paths, so every path a binary was linked with (such as
// /lib64/ld-linux-x86-64.so.2) resolves in the image as on the host.
func (t *Tree) MergedUsr() error {
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := t.Dir("usr/"+d, 0o755); err != nil {
			return err
		}
		if err := t.Symlink(d, "usr/"+d); err != nil {
			return err
		}
	}
	return nil
}

// CopyHost copies the host path p (a file or a chain of symlinks ending in
// one) into the tree at its real location: directory components are
// resolved, so /bin/bash lands at usr/bin/bash, and a symlink leaf such as
// libfoo.so.1 -> libfoo.so.1.2 is kept as a link next to its target.
func (t *Tree) CopyHost(p string) error {
	for range 16 {
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		real := filepath.Join(dir, filepath.Base(p))
		fi, err := os.Lstat(real)
		if err != nil {
			return fmt.Errorf("images: %w", err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return t.HostFile(real, real)
		}
		target, err := os.Readlink(real)
		if err != nil {
			return err
		}
		if err := t.Symlink(real, target); err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = target
	}
	return fmt.Errorf("images: too many symlinks from %s", p)
}

// CopyBinaries copies each host binary with its shared-library closure
// (what ldd lists, the dynamic loader included).
func (t *Tree) CopyBinaries(ctx context.Context, bins ...string) error {
	libs, err := LibraryClosure(ctx, bins...)
	if err != nil {
		return err
	}
	for _, p := range append(append([]string{}, bins...), libs...) {
		if err := t.CopyHost(p); err != nil {
			return err
		}
	}
	return nil
}

// LibraryClosure returns the shared libraries the binaries load, as ldd
// resolves them on this machine (ldd lists the transitive closure), sorted
// and without duplicates. A static binary has none; a library that ldd
// cannot find is an error naming the binary.
func LibraryClosure(ctx context.Context, bins ...string) ([]string, error) {
	seen := map[string]bool{}
	for _, b := range bins {
		out, err := exec.CommandContext(ctx, "ldd", b).CombinedOutput()
		if err != nil {
			if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
				continue
			}
			return nil, fmt.Errorf("images: ldd %s: %w: %s", b, err, bytes.TrimSpace(out))
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			// "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)",
			// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
			if strings.Contains(line, "not found") {
				return nil, fmt.Errorf("images: ldd %s: %s", b, line)
			}
			f := strings.Fields(line)
			var p string
			switch {
			case len(f) >= 3 && f[1] == "=>":
				p = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				p = f[0]
			}
			if strings.HasPrefix(p, "/") {
				seen[p] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// BusyboxApplets adds busybox (a static binary) at usr/bin/busybox and a
// link usr/bin/APPLET -> busybox for each applet it lists, except those in
// skip and those the tree already has (a real tool wins over an applet).
func (t *Tree) BusyboxApplets(ctx context.Context, busybox string, skip ...string) error {
	if err := t.HostFile("usr/bin/busybox", busybox); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("images: %s --list: %w", busybox, err)
	}
	no := map[string]bool{"busybox": true}
	for _, s := range skip {
		no[s] = true
	}
	for _, a := range strings.Fields(string(out)) {
		if no[a] || strings.Contains(a, "/") || t.Has("usr/bin/"+a) || t.Has("usr/sbin/"+a) {
			continue
		}
		if err := t.Symlink("usr/bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	return nil
}

// User is a passwd entry; Group a group entry.
type User struct {
	Name     string
	UID, GID int
	Home     string
	Shell    string
}
type Group struct {
	Name    string
	GID     int
	Members []string
}

// Accounts writes /etc/passwd, /etc/group and /etc/nsswitch.conf (files,
// then DNS, for glibc's getent and resolver), with root and nobody always
// present.
func (t *Tree) Accounts(users []User, groups []Group) error {
	all := append([]User{{"root", 0, 0, "/root", "/bin/sh"}, {"nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin"}}, users...)
	var pw, gr bytes.Buffer
	for _, u := range all {
		fmt.Fprintf(&pw, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Name, u.Home, u.Shell)
	}
	allg := append([]Group{{"root", 0, nil}, {"nogroup", 65534, nil}}, groups...)
	for _, g := range allg {
		fmt.Fprintf(&gr, "%s:x:%d:%s\n", g.Name, g.GID, strings.Join(g.Members, ","))
	}
	if err := t.File("etc/passwd", 0o644, pw.Bytes()); err != nil {
		return err
	}
	if err := t.File("etc/group", 0o644, gr.Bytes()); err != nil {
		return err
	}
	if err := t.File("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\n")); err != nil {
		return err
	}
	if err := t.Dir("tmp", 0o1777); err != nil {
		return err
	}
	return t.Dir("root", 0o700)
}

// DebianPackage returns a directory holding the Debian package pkg unpacked
// with `dpkg -x` (not installed), downloading it with `apt-get download`
// into cacheDir/debs first if no .deb of it is there. The unpacked tree is
// kept beside the .deb and reused.
func DebianPackage(ctx context.Context, cacheDir, pkg string) (string, error) {
	debs := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		sort.Strings(m)
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	deb := find()
	if deb == "" {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			// The package lists may be missing on a fresh machine.
			if out2, err2 := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err2 != nil {
				return "", fmt.Errorf("images: apt-get download %s: %w: %s; apt-get update: %v: %s", pkg, err, out, err2, out2)
			}
			cmd = exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
			cmd.Dir = debs
			if out, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("images: apt-get download %s: %w: %s", pkg, err, out)
			}
		}
		if deb = find(); deb == "" {
			return "", fmt.Errorf("images: apt-get download %s left no %s_*.deb in %s", pkg, pkg, debs)
		}
	}
	dir := strings.TrimSuffix(deb, ".deb") + ".x"
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return dir, nil
	}
	os.RemoveAll(dir)
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", deb, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("images: dpkg -x %s: %w: %s", deb, err, out)
	}
	return dir, os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644)
}
