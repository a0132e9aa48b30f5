package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// epoch is the modification time of every entry in every archive, so that
// the bytes depend only on the content.
var epoch = time.Unix(0, 0).UTC()

// Entry is one file, directory or symbolic link of a Tree.
type Entry struct {
	Path     string // relative, cleaned, no leading slash
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     int64  // permission bits (and setuid/setgid/sticky)
	UID, GID int
	Link     string // symlink target
	Src      string // regular file: content read from this host file...
	Data     []byte // ...or this, when Src is ""
}

// Tree is an image layer's root filesystem under construction. Parent
// directories are added (0755, root) when a child is added. Adding a path
// twice replaces the entry, except that a directory never replaces what is
// there already.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*Entry{}} }

func clean(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "", fmt.Errorf("images: empty path %q", p)
	}
	return c, nil
}

func (t *Tree) add(e Entry) error {
	p, err := clean(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if d := path.Dir(p); d != "." {
		if err := t.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if old, ok := t.entries[p]; ok && e.Type == tar.TypeDir {
		if old.Type != tar.TypeDir {
			return fmt.Errorf("images: %s is already a %s, not a directory", p, typeName(old.Type))
		}
		return nil
	}
	t.entries[p] = &e
	return nil
}

func typeName(ty byte) string {
	switch ty {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type %q", ty)
}

// Dir adds a directory (and its parents).
func (t *Tree) Dir(p string, mode int64) error {
	return t.add(Entry{Path: p, Type: tar.TypeDir, Mode: mode})
}

// DirOwned adds a directory owned by uid:gid.
func (t *Tree) DirOwned(p string, mode int64, uid, gid int) error {
	if err := t.Dir(p, mode); err != nil {
		return err
	}
	c, _ := clean(p)
	e := t.entries[c]
	e.Mode, e.UID, e.GID = mode, uid, gid
	return nil
}

// File adds a regular file with the given content.
func (t *Tree) File(p string, mode int64, data []byte) error {
	return t.add(Entry{Path: p, Type: tar.TypeReg, Mode: mode, Data: data})
}

// Symlink adds a symbolic link p -> target.
func (t *Tree) Symlink(p, target string) error {
	return t.add(Entry{Path: p, Type: tar.TypeSymlink, Mode: 0o777, Link: target})
}

// HostFile adds the host's regular file src at p, with src's permissions.
// The content is read when the layer is written.
func (t *Tree) HostFile(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("images: %s is not a regular file", src)
	}
	return t.add(Entry{Path: p, Type: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Src: src})
}

// Has reports whether p is in the tree.
func (t *Tree) Has(p string) bool {
	c, err := clean(p)
	if err != nil {
		return false
	}
	_, ok := t.entries[c]
	return ok
}

// Entries returns the entries sorted by path; a directory comes before
// everything in it.
func (t *Tree) Entries() []Entry {
	out := make([]Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// WriteTar writes the tree as an uncompressed tar (an OCI layer): sorted
// entries, fixed times, numeric owners only. A host file that changed size
// since it was added is an error, not a short layer.
func (t *Tree) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range t.Entries() {
		h := &tar.Header{
			Typeflag: e.Type, Name: e.Path, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: epoch, Linkname: e.Link, Format: tar.FormatPAX,
		}
		if e.Type == tar.TypeDir {
			h.Name += "/"
		}
		var src io.Reader
		if e.Type == tar.TypeReg {
			if e.Src != "" {
				f, err := os.Open(e.Src)
				if err != nil {
					return fmt.Errorf("images: %w", err)
				}
				fi, err := f.Stat()
				if err != nil {
					f.Close()
					return err
				}
				h.Size, src = fi.Size(), f
			} else {
				h.Size, src = int64(len(e.Data)), strings.NewReader(string(e.Data))
			}
		}
		err := tw.WriteHeader(h)
		if err == nil && src != nil {
			// tar.Writer refuses more or fewer bytes than h.Size.
			_, err = io.Copy(tw, src)
		}
		if c, ok := src.(io.Closer); ok {
			c.Close()
		}
		if err != nil {
			return fmt.Errorf("images: %s: %w", e.Path, err)
		}
	}
	return tw.Close()
}

// Config is the part of an OCI image configuration that says how to run it.
type Config struct {
	Entrypoint   []string `json:"Entrypoint,omitempty"`
	Cmd          []string `json:"Cmd,omitempty"`
	Env          []string `json:"Env,omitempty"`
	WorkingDir   string   `json:"WorkingDir,omitempty"`
	User         string   `json:"User,omitempty"`
	ExposedPorts []string `json:"-"` // "8080/tcp"
	StopSignal   string   `json:"StopSignal,omitempty"`
}

// Image is one image of an archive: its names ("registry.k8s.io/pause:3.10.2"),
// its layers (bottom first; a *Tree shared by several images is stored once)
// and its configuration.
type Image struct {
	Tags   []string
	Layers []*Tree
	Config Config
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Media types written.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	// AnnotationImageName is the full name containerd gives an imported
	// manifest; AnnotationRefName is the OCI layout's tag.
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Index is an OCI image index (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// DockerManifest is one element of a `docker save` manifest.json.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// ImageConfig is the OCI image configuration blob.
type ImageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Config
		ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type blob struct {
	digest string // "sha256:..."
	size   int64
	file   string // content in this file, or
	data   []byte
}

func (b blob) path() string { return "blobs/sha256/" + strings.TrimPrefix(b.digest, "sha256:") }

func bytesBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), size: int64(len(data)), data: data}
}

// WriteArchive writes images to dst as one archive (see the package doc).
// Layers are staged in tmpDir and removed again. dst is written through a
// temporary file and renamed, so a reader never sees half an archive.
func WriteArchive(dst, tmpDir string, images []Image) (err error) {
	if len(images) == 0 {
		return errors.New("images: no image to write")
	}
	stage, err := os.MkdirTemp(tmpDir, ".layers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)

	blobs := map[string]blob{}
	layerBlob := map[*Tree]blob{}
	var index Index
	index.SchemaVersion, index.MediaType = 2, MediaTypeIndex
	var docker []DockerManifest
	for _, img := range images {
		if len(img.Tags) == 0 {
			return errors.New("images: an image has no tag")
		}
		var cfg ImageConfig
		cfg.Created, cfg.Architecture, cfg.OS = epoch.Format(time.RFC3339), "amd64", "linux"
		cfg.Config.Config = img.Config
		if len(img.Config.ExposedPorts) > 0 {
			cfg.Config.ExposedPorts = map[string]struct{}{}
			for _, p := range img.Config.ExposedPorts {
				cfg.Config.ExposedPorts[p] = struct{}{}
			}
		}
		cfg.RootFS.Type = "layers"
		man := Manifest{SchemaVersion: 2, MediaType: MediaTypeManifest}
		dm := DockerManifest{RepoTags: img.Tags}
		for _, l := range img.Layers {
			b, ok := layerBlob[l]
			if !ok {
				if b, err = writeLayer(stage, l); err != nil {
					return err
				}
				layerBlob[l] = b
				blobs[b.digest] = b
			}
			// Uncompressed: the diff ID is the layer digest.
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, b.digest)
			man.Layers = append(man.Layers, Descriptor{MediaType: MediaTypeLayer, Digest: b.digest, Size: b.size})
			dm.Layers = append(dm.Layers, b.path())
		}
		cb, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		c := bytesBlob(cb)
		blobs[c.digest] = c
		man.Config = Descriptor{MediaType: MediaTypeConfig, Digest: c.digest, Size: c.size}
		dm.Config = c.path()
		mb, err := json.Marshal(man)
		if err != nil {
			return err
		}
		m := bytesBlob(mb)
		blobs[m.digest] = m
		for _, tag := range img.Tags {
			ref := tag
			if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
				ref = tag[i+1:]
			}
			index.Manifests = append(index.Manifests, Descriptor{
				MediaType: MediaTypeManifest, Digest: m.digest, Size: m.size,
				Annotations: map[string]string{AnnotationImageName: tag, AnnotationRefName: ref},
			})
		}
		docker = append(docker, dm)
	}

	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tw := tar.NewWriter(tmp)
	put := func(name string, typ byte, data []byte, file string, size int64) error {
		h := &tar.Header{Typeflag: typ, Name: name, Mode: 0o644, ModTime: epoch, Size: size, Format: tar.FormatPAX}
		if typ == tar.TypeDir {
			h.Mode, h.Size = 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := io.Copy(tw, f)
			if err == nil && n != size {
				err = fmt.Errorf("images: staged layer %s changed size", file)
			}
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	meta := []struct {
		name string
		v    any
	}{
		{"oci-layout", map[string]string{"imageLayoutVersion": "1.0.0"}},
		{"index.json", index},
		{"manifest.json", docker},
	}
	for _, m := range meta {
		b, err := json.Marshal(m.v)
		if err != nil {
			return err
		}
		if err := put(m.name, tar.TypeReg, b, "", int64(len(b))); err != nil {
			return err
		}
	}
	if err := put("blobs/", tar.TypeDir, nil, "", 0); err != nil {
		return err
	}
	if err := put("blobs/sha256/", tar.TypeDir, nil, "", 0); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		b := blobs[d]
		if err := put(b.path(), tar.TypeReg, b.data, b.file, b.size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// writeLayer writes t as a tar into dir while hashing it.
func writeLayer(dir string, t *Tree) (blob, error) {
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		return blob{}, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := t.WriteTar(cw); err != nil {
		return blob{}, err
	}
	if err := f.Close(); err != nil {
		return blob{}, err
	}
	return blob{digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: cw.n, file: f.Name()}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Fingerprint is a digest of everything that decides an archive's bytes:
// each image's tags and config, and each layer entry's metadata and content
// (a host file is read and hashed). Build compares it with the one stored
// beside a cached archive.
func Fingerprint(images []Image) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "podroute-images v1\n")
	contentHash := map[string]string{}
	for _, img := range images {
		cb, _ := json.Marshal(img.Config)
		fmt.Fprintf(h, "image %q %s ports=%q\n", img.Tags, cb, img.Config.ExposedPorts)
		for _, l := range img.Layers {
			fmt.Fprintf(h, "layer\n")
			for _, e := range l.Entries() {
				sum := ""
				if e.Type == tar.TypeReg {
					if e.Src != "" {
						if s, ok := contentHash[e.Src]; ok {
							sum = s
						} else {
							f, err := os.Open(e.Src)
							if err != nil {
								return "", err
							}
							fh := sha256.New()
							_, err = io.Copy(fh, f)
							f.Close()
							if err != nil {
								return "", err
							}
							sum = hex.EncodeToString(fh.Sum(nil))
							contentHash[e.Src] = sum
						}
					} else {
						s := sha256.Sum256(e.Data)
						sum = hex.EncodeToString(s[:])
					}
				}
				fmt.Fprintf(h, "%q %c %o %d %d %q %s\n", e.Path, e.Type, e.Mode, e.UID, e.GID, e.Link, sum)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
