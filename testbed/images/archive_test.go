package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testImages(t *testing.T) []Image {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := NewTree()
	for _, err := range []error{
		tr.MergedUsr(),
		tr.HostFile("usr/bin/hello", src),
		tr.Symlink("usr/bin/hi", "hello"),
		tr.File("etc/motd", 0o644, []byte("lab\n")),
		tr.DirOwned("home/u", 0o750, 1000, 1000),
		tr.Dir("tmp", 0o1777),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return []Image{
		{Tags: []string{"registry.example/a:1", "registry.example/a:2"}, Layers: []*Tree{tr}, Config: Config{Entrypoint: []string{"/usr/bin/hello"}, ExposedPorts: []string{"80/tcp"}}},
		{Tags: []string{"registry.example/b:3"}, Layers: []*Tree{tr}, Config: Config{Cmd: []string{"sh"}}},
	}
}

func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: header not normalized: mtime %v uname %q gname %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// The archive is a consistent OCI layout and docker-save archive: every
// descriptor's digest and size match its blob, the config's diff IDs match
// the (uncompressed) layers, a shared layer is stored once, and the docker
// manifest names the same blobs.
func TestArchiveConsistent(t *testing.T) {
	imgs := testImages(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "x.tar")
	if err := WriteArchive(dst, dir, imgs); err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, dst)
	blob := func(d Descriptor) []byte {
		t.Helper()
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if digestOf(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: digest %s size %d, descriptor says size %d", d.Digest, digestOf(b), len(b), d.Size)
		}
		return b
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", files["oci-layout"])
	}
	var idx Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 3 {
		t.Fatalf("index has %d manifests, want one per tag (3)", len(idx.Manifests))
	}
	layers := map[string]bool{}
	for _, md := range idx.Manifests {
		name := md.Annotations[AnnotationImageName]
		if !strings.HasSuffix(name, ":"+md.Annotations[AnnotationRefName]) {
			t.Errorf("manifest annotations %v: ref name is not the tag of the image name", md.Annotations)
		}
		var m Manifest
		if err := json.Unmarshal(blob(md), &m); err != nil {
			t.Fatal(err)
		}
		var cfg ImageConfig
		if err := json.Unmarshal(blob(m.Config), &cfg); err != nil {
			t.Fatal(err)
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			t.Fatalf("%s: %d diff IDs for %d layers", name, len(cfg.RootFS.DiffIDs), len(m.Layers))
		}
		for i, l := range m.Layers {
			lb := blob(l)
			if cfg.RootFS.DiffIDs[i] != l.Digest {
				t.Errorf("%s: diff ID %s != layer digest %s (uncompressed layer)", name, cfg.RootFS.DiffIDs[i], l.Digest)
			}
			layers[l.Digest] = true
			// The layer holds what the tree says, parents first.
			lr := tar.NewReader(bytes.NewReader(lb))
			var names []string
			for {
				h, err := lr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, h.Name)
				if h.Name == "usr/bin/hello" {
					c, _ := io.ReadAll(lr)
					if string(c) != "#!/bin/sh\necho hi\n" || h.Mode != 0o755 {
						t.Errorf("usr/bin/hello: mode %o content %q", h.Mode, c)
					}
				}
				if h.Name == "home/u/" && (h.Uid != 1000 || h.Mode != 0o750) {
					t.Errorf("home/u: uid %d mode %o", h.Uid, h.Mode)
				}
				if h.Name == "usr/bin/hi" && (h.Typeflag != tar.TypeSymlink || h.Linkname != "hello") {
					t.Errorf("usr/bin/hi: %c -> %s", h.Typeflag, h.Linkname)
				}
			}
			for i := 1; i < len(names); i++ {
				if names[i-1] >= names[i] {
					t.Errorf("layer entries not sorted: %s before %s", names[i-1], names[i])
				}
			}
		}
		if name == "registry.example/a:1" && (cfg.Config.Entrypoint[0] != "/usr/bin/hello" || len(cfg.Config.ExposedPorts) != 1) {
			t.Errorf("config of %s: %+v", name, cfg.Config)
		}
	}
	if len(layers) != 1 {
		t.Errorf("the shared layer is stored %d times", len(layers))
	}
	var dm []DockerManifest
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil {
		t.Fatal(err)
	}
	if len(dm) != 2 || len(dm[0].RepoTags) != 2 || dm[1].RepoTags[0] != "registry.example/b:3" {
		t.Fatalf("manifest.json = %+v", dm)
	}
	for _, m := range dm {
		for _, p := range append([]string{m.Config}, m.Layers...) {
			if _, ok := files[p]; !ok {
				t.Errorf("manifest.json names %s, not in the archive", p)
			}
		}
	}
}

// Two builds of the same inputs are byte-identical, and so are their
// fingerprints; a changed input file changes the fingerprint.
func TestArchiveDeterministic(t *testing.T) {
	imgs := testImages(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	if err := WriteArchive(a, dir, imgs); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(b, dir, testImages(t)); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatalf("two builds differ (%d and %d bytes)", len(ab), len(bb))
	}
	f1, err := Fingerprint(imgs)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := Fingerprint(testImages(t))
	if f1 != f2 {
		t.Errorf("fingerprints differ for the same inputs")
	}
	// Change the content of the host file behind usr/bin/hello.
	var src string
	for _, e := range imgs[0].Layers[0].Entries() {
		if e.Path == "usr/bin/hello" {
			src = e.Src
		}
	}
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho bye\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f3, _ := Fingerprint(imgs); f3 == f1 {
		t.Errorf("fingerprint did not change with the content of an input file")
	}
	// No staging leftovers.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestTreeRules(t *testing.T) {
	tr := NewTree()
	if err := tr.File("a/b", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := tr.Dir("a/b", 0o755); err == nil {
		t.Errorf("a directory replaced a file")
	}
	if err := tr.File("/x/../a/c", 0o644, nil); err != nil || !tr.Has("a/c") {
		t.Errorf("path not cleaned: %v", err)
	}
	if err := tr.File("", 0o644, nil); err == nil {
		t.Errorf("empty path accepted")
	}
}

func TestLibraryClosure(t *testing.T) {
	if _, err := os.Stat("/usr/bin/bash"); err != nil {
		t.Skip("no /usr/bin/bash")
	}
	libs, err := LibraryClosure(t.Context(), "/usr/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for _, l := range libs {
		libc = libc || strings.Contains(l, "libc.so")
		loader = loader || strings.Contains(l, "ld-linux")
	}
	if !libc || !loader {
		t.Errorf("bash's closure %v lacks libc or the loader", libs)
	}
	tr := NewTree()
	if err := tr.MergedUsr(); err != nil {
		t.Fatal(err)
	}
	if err := tr.CopyBinaries(t.Context(), "/bin/bash"); err != nil {
		t.Fatal(err)
	}
	if !tr.Has("usr/bin/bash") || !tr.Has("usr/lib64/ld-linux-x86-64.so.2") {
		t.Errorf("copied tree lacks usr/bin/bash or the loader link: %d entries", len(tr.Entries()))
	}
}
