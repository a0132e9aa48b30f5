package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DefaultDir is where Build caches archives: $PODROUTE_IMAGES_DIR, else
// ~/.cache/podroute/images.
func DefaultDir() string {
	if d := os.Getenv("PODROUTE_IMAGES_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "podroute", "images")
}

// DefaultBinDir is where `make e2e-tools` puts agnhost, CoreDNS and
// regression-issue-74839: $PODROUTE_K8S_BIN, else
// ~/.cache/podroute/k8s-v1.36.0 (the same directory as the Kubernetes
// binaries).
func DefaultBinDir() string {
	if d := os.Getenv("PODROUTE_K8S_BIN"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "podroute", "k8s-"+K8sVersion)
}

// Options configure Build.
type Options struct {
	Dir    string   // archive cache; "" means DefaultDir()
	BinDir string   // agnhost, coredns, regression-issue-74839; "" means DefaultBinDir()
	Only   []string // archive names (Spec.Name) to build; nil means the whole Catalog
	Logf   func(format string, args ...any)
}

// Archive is one built (or cached) archive.
type Archive struct {
	Name  string
	Path  string
	Tags  []string
	Size  int64
	Built bool          // false: the cached file was up to date
	Took  time.Duration // assembling, fingerprinting and (if Built) writing
}

// ArchivePath is where Build puts the archive NAME in dir.
func ArchivePath(dir, name string) string { return filepath.Join(dir, name+".tar") }

// Build makes each archive of the Catalog (or opt.Only) whose inputs
// changed since it was last written, and returns all of them.
func Build(ctx context.Context, opt Options) ([]Archive, error) {
	if opt.Dir == "" {
		opt.Dir = DefaultDir()
	}
	if opt.BinDir == "" {
		opt.BinDir = DefaultBinDir()
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	work := filepath.Join(opt.Dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range opt.Only {
		want[n] = true
	}
	b := &builder{opt: opt, workDir: work}
	var out []Archive
	for _, s := range Catalog {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		delete(want, s.Name)
		start := time.Now()
		imgs, err := s.Assemble(ctx, b)
		if err != nil {
			return out, fmt.Errorf("image %s: %w", s.Name, err)
		}
		fp, err := Fingerprint(imgs)
		if err != nil {
			return out, fmt.Errorf("image %s: %w", s.Name, err)
		}
		a := Archive{Name: s.Name, Path: ArchivePath(opt.Dir, s.Name)}
		for _, img := range imgs {
			a.Tags = append(a.Tags, img.Tags...)
		}
		keyFile := a.Path + ".key"
		old, _ := os.ReadFile(keyFile)
		fi, statErr := os.Stat(a.Path)
		if statErr == nil && strings.TrimSpace(string(old)) == fp {
			a.Size, a.Took = fi.Size(), time.Since(start)
			opt.Logf("images: %s up to date (%s)", s.Name, a.Path)
			out = append(out, a)
			continue
		}
		os.Remove(keyFile)
		if err := WriteArchive(a.Path, work, imgs); err != nil {
			return out, fmt.Errorf("image %s: %w", s.Name, err)
		}
		if err := os.WriteFile(keyFile, []byte(fp+"\n"), 0o644); err != nil {
			return out, err
		}
		if fi, err := os.Stat(a.Path); err == nil {
			a.Size = fi.Size()
		}
		a.Built, a.Took = true, time.Since(start)
		opt.Logf("images: built %s in %v (%.1f MiB): %s", s.Name, a.Took.Round(time.Millisecond), float64(a.Size)/(1<<20), strings.Join(a.Tags, " "))
		out = append(out, a)
	}
	for n := range want {
		return out, fmt.Errorf("images: no image %q in the catalog", n)
	}
	return out, nil
}

// Import imports each archive into the containerd listening on socket, in
// its "k8s.io" namespace (the CRI plugin's), with `ctr images import`,
// which also unpacks them into the default snapshotter so that the first
// pod does not wait for it.
func Import(ctx context.Context, socket string, archives ...string) error {
	for _, a := range archives {
		cmd := exec.CommandContext(ctx, "ctr", "--address", socket, "--namespace", "k8s.io", "images", "import", a)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("images: ctr images import %s into %s: %w: %s", a, socket, err, strings.TrimSpace(out.String()))
		}
	}
	return nil
}

// Paths returns the archive paths of the whole Catalog in dir ("" means
// DefaultDir()), and an error naming `make images` if one is missing.
func Paths(dir string) ([]string, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	var out, missing []string
	for _, s := range Catalog {
		p := ArchivePath(dir, s.Name)
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
		out = append(out, p)
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("images: missing %s; build them with `make images`", strings.Join(missing, ", "))
	}
	return out, nil
}

// ImportAll imports every archive of the Catalog from dir ("" means
// DefaultDir()) into the containerd listening on socket; a missing archive
// is an error naming `make images`.
func ImportAll(ctx context.Context, socket, dir string) error {
	paths, err := Paths(dir)
	if err != nil {
		return err
	}
	return Import(ctx, socket, paths...)
}
