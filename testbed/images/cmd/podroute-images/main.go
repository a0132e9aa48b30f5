// Command podroute-images builds the lab's container images into cached
// archives (package images) and imports them into a containerd.
//
//	podroute-images build [NAME...]          build what changed; print each archive
//	podroute-images list                     the catalog: archives, tags, why
//	podroute-images import SOCKET [NAME...]  ctr-import archives into that containerd
//
// $PODROUTE_IMAGES_DIR (default ~/.cache/podroute/images) holds the archives;
// $PODROUTE_K8S_BIN holds the Go binaries `make e2e-tools` built.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/podroute/podroute/testbed/images"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "build":
		start := time.Now()
		as, err := images.Build(ctx, images.Options{Only: os.Args[2:], Logf: log.Printf})
		for _, a := range as {
			state := "cached"
			if a.Built {
				state = "built"
			}
			fmt.Printf("%-24s %7.1f MiB  %-6s %6.1fs  %s\n", a.Name, float64(a.Size)/(1<<20), state, a.Took.Seconds(), a.Path)
			for _, t := range a.Tags {
				fmt.Printf("%-24s   %s\n", "", t)
			}
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("images: %d archives in %.1fs\n", len(as), time.Since(start).Seconds())
	case "list":
		for _, s := range images.Catalog {
			fmt.Printf("%-24s %s\n", s.Name, s.Why)
		}
		fmt.Println("\nnot built (no sig-network spec pulls them):")
		var names []string
		for n := range images.NotBuilt {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Printf("  %-30s %s\n", n, images.NotBuilt[n])
		}
	case "import":
		if len(os.Args) < 3 {
			usage()
		}
		paths, err := images.Paths("")
		if len(os.Args) > 3 {
			paths, err = nil, nil
			for _, n := range os.Args[3:] {
				paths = append(paths, images.ArchivePath(images.DefaultDir(), n))
			}
		}
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		if err := images.Import(ctx, os.Args[2], paths...); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("imported %d archives in %.1fs\n", len(paths), time.Since(start).Seconds())
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: podroute-images build [NAME...] | list | import SOCKET [NAME...]")
	os.Exit(2)
}
