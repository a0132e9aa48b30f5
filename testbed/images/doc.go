// Package images builds, without a registry or Docker, the container images
// that the lab's real Kubernetes nodes run and that the sig-network e2e specs
// pull, and imports them into a node's containerd.
//
// Each image is a root filesystem assembled in Go (Tree) from Go binaries
// built from the module proxy (pause from ./pause, agnhost,
// regression-issue-74839 and CoreDNS from `make e2e-tools`) and Debian
// binaries copied with their shared-library closure (found with ldd) from the
// machine's own installed packages, or from a package unpacked with
// `apt-get download` + `dpkg -x` where installing it would start a service
// (nginx) or is not wanted (busybox-static). The Catalog says what goes into
// which image and under which names (those of k8s.io/kubernetes
// test/utils/image/manifest.go at v1.36.0).
//
// WriteArchive packs images into one tar that is at once an OCI image layout
// (oci-layout, index.json, blobs/sha256/...) and a `docker save` archive
// (manifest.json with RepoTags), which `ctr -n k8s.io images import` accepts.
// Archives are deterministic: entries sorted, fixed modification times,
// uid/gid as given and no user names, uncompressed layers, so the same inputs
// give the same bytes and digests. Build caches each archive under
// ~/.cache/podroute/images with a key computed from every input file's
// content, and rebuilds only when an input changed.
//
// What it owns: its cache directory. What it must not touch: the machine's
// installed packages beyond installing missing ones (the make target does
// that), any containerd but the one whose socket it is given.
package images
