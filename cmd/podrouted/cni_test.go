package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/config"
)

// The conflist podrouted writes carries cniVersion and cniChain from the
// config file, for every plugin (both modes build the writer with
// newCNIWriter from the config file).
func TestConfListFollowsTheConfig(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		version     string
		types       []string
	}{
		{"defaults", "", "1.0.0", []string{"podroute-cni", "portmap", "bandwidth"}},
		{"1.1.0, no chain", "cniVersion: 1.1.0\ncniChain: []\n", "1.1.0", []string{"podroute-cni"}},
		{"0.4.0, bandwidth", "cniVersion: 0.4.0\ncniChain: [bandwidth]\n", "0.4.0", []string{"podroute-cni", "bandwidth"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, err := config.Load(writeConfig(t, validConfig+"cniConfDir: "+dir+"\n"+tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			d := desiredFromConfig(cfg)
			if err := newCNIWriter(cfg, slog.Default()).write(d.PodCIDRs); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, cni.DefaultConfListFile))
			if err != nil {
				t.Fatal(err)
			}
			var list struct {
				CNIVersion string `json:"cniVersion"`
				Plugins    []struct {
					Type       string `json:"type"`
					CNIVersion string `json:"cniVersion"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(b, &list); err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, p := range list.Plugins {
				types = append(types, p.Type)
				if p.CNIVersion != tc.version {
					t.Errorf("plugin %s cniVersion %q, want %q", p.Type, p.CNIVersion, tc.version)
				}
			}
			if list.CNIVersion != tc.version || !slices.Equal(types, tc.types) {
				t.Errorf("conflist %s %v, want %s %v\n%s", list.CNIVersion, types, tc.version, tc.types, b)
			}
		})
	}
}
