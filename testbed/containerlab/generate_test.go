package containerlab

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// These tests need neither root nor Docker.

// clabCommittedDir holds the committed containerlab files: this package's
// own directory, where go test runs.
const clabCommittedDir = "."

// clabSchemaPath is containerlab's own topology schema, vendored from the
// github.com/srl-labs/containerlab module (see schema/README.md).
const (
	clabSchemaPath = "schema/clab.schema.json"
	clabSchemaID   = "https://containerlab.dev/clab.schema.json"
)

func clabGenerate(t *testing.T, name string) (*topology.Plan, map[string][]byte) {
	t.Helper()
	p, err := topology.NewPlan(topology.Builtins()[name])
	if err != nil {
		t.Fatal(err)
	}
	files, err := Files(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p, files
}

// TestContainerlabFilesCommitted: the files in testbed/containerlab are
// exactly what the generator makes from the built-in topologies.
func TestContainerlabFilesCommitted(t *testing.T) {
	for _, name := range topology.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			_, files := clabGenerate(t, name)
			diffs, err := Compare(clabCommittedDir, name, files)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffs {
				t.Errorf("testbed/containerlab/%s", d)
			}
			if len(diffs) > 0 {
				t.Errorf("the committed containerlab files of %s are stale; regenerate them from the repository root with:\n\tgo run ./cmd/podroute-lab clab --topology %s", name, name)
			}
		})
	}
}

var clabSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	data, err := os.ReadFile(clabSchemaPath)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(clabSchemaID, doc); err != nil {
		return nil, err
	}
	return c.Compile(clabSchemaID)
})

// clabDoc parses a .clab.yml strictly and returns it as JSON and as a
// generic value for the schema.
func clabDoc(t *testing.T, data []byte) ([]byte, any) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("not valid YAML: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return j, doc
}

// TestContainerlabSchema: every generated topology validates against the
// JSON schema containerlab ships, and so does every committed one.
func TestContainerlabSchema(t *testing.T) {
	sch, err := clabSchema()
	if err != nil {
		t.Fatalf("containerlab schema %s: %v", clabSchemaPath, err)
	}
	for _, name := range topology.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			_, files := clabGenerate(t, name)
			_, doc := clabDoc(t, files[TopologyFile(name)])
			if err := sch.Validate(doc); err != nil {
				t.Errorf("generated %s does not validate against containerlab's schema:\n%v", TopologyFile(name), err)
			}
			committed, err := os.ReadFile(filepath.Join(clabCommittedDir, TopologyFile(name)))
			if err != nil {
				t.Fatal(err)
			}
			_, doc = clabDoc(t, committed)
			if err := sch.Validate(doc); err != nil {
				t.Errorf("committed %s does not validate against containerlab's schema:\n%v", TopologyFile(name), err)
			}
		})
	}
}

// TestContainerlabSchemaRejects makes sure the schema check has teeth: a
// typo in a node key, an unknown kind and a missing topology fail.
func TestContainerlabSchemaRejects(t *testing.T) {
	sch, err := clabSchema()
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"unknown node key": "name: x\ntopology:\n  nodes:\n    a:\n      kind: linux\n      imgae: alpine\n",
		"unknown kind":     "name: x\ntopology:\n  nodes:\n    a:\n      kind: linx\n",
		"no topology":      "name: x\n",
		"bad endpoint":     "name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [\"a\", \"b:eth1\"]\n",
	} {
		_, v := clabDoc(t, []byte(doc))
		if sch.Validate(v) == nil {
			t.Errorf("%s: the schema accepted\n%s", name, doc)
		}
	}
}

// clabTopo is the part of a .clab.yml the structure checks read.
type clabTopo struct {
	Name     string `json:"name"`
	Topology struct {
		Nodes map[string]struct {
			Kind       string   `json:"kind"`
			Image      string   `json:"image"`
			Group      string   `json:"group"`
			Entrypoint string   `json:"entrypoint"`
			Binds      []string `json:"binds"`
			Exec       []string `json:"exec"`
		} `json:"nodes"`
		Links []struct {
			Endpoints []string `json:"endpoints"`
			MTU       int      `json:"mtu"`
		} `json:"links"`
	} `json:"topology"`
}

var clabAddrCmd = regexp.MustCompile(`^ip addr add (\S+) dev (\S+)$`)

// TestContainerlabStructure checks what the schema cannot: every link end
// and bind refers to something that exists, interface names are legal for
// containerlab, every address of the plan is set on its interface, and
// the file has no '$' (containerlab expands environment variables).
func TestContainerlabStructure(t *testing.T) {
	for _, name := range topology.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			p, files := clabGenerate(t, name)
			data := files[TopologyFile(name)]
			if bytes.ContainsRune(data, '$') {
				t.Errorf("%s contains '$', which containerlab would expand as an environment variable", TopologyFile(name))
			}
			j, _ := clabDoc(t, data)
			var topo clabTopo
			if err := yaml.UnmarshalStrict(j, &topo); err != nil {
				t.Fatal(err)
			}
			if topo.Name != name {
				t.Errorf("lab name %q, want %q", topo.Name, name)
			}
			want := clabElements(p)
			if len(topo.Topology.Nodes) != len(want) {
				t.Errorf("%d containers, want %d (%v)", len(topo.Topology.Nodes), len(want), want)
			}
			// Interfaces each container has: its link ends, plus the
			// bridges it creates.
			ifs := map[string]map[string]bool{}
			for _, e := range want {
				n, ok := topo.Topology.Nodes[e]
				if !ok {
					t.Errorf("element %s is not a containerlab node", e)
					continue
				}
				if n.Kind != "linux" || n.Image == "" {
					t.Errorf("node %s: kind %q image %q, want linux with an image", e, n.Kind, n.Image)
				}
				for _, b := range n.Binds {
					host, _, _ := strings.Cut(b, ":")
					if files[host] == nil {
						t.Errorf("node %s binds %s, which is not a generated file", e, host)
					}
				}
				ifs[e] = map[string]bool{}
			}
			for _, l := range topo.Topology.Links {
				if len(l.Endpoints) != 2 || l.MTU != LinkMTU {
					t.Errorf("link %v mtu %d: want 2 endpoints, mtu %d", l.Endpoints, l.MTU, LinkMTU)
				}
				for _, end := range l.Endpoints {
					e, ifc, _ := strings.Cut(end, ":")
					switch {
					case ifs[e] == nil:
						t.Errorf("link end %s: no node %s", end, e)
					case ifc == "eth0" || len(ifc) > netns.MaxIfNameLen || ifc == "":
						t.Errorf("link end %s: interface name not allowed in containerlab", end)
					case ifs[e][ifc]:
						t.Errorf("link end %s used twice", end)
					default:
						ifs[e][ifc] = true
					}
				}
			}
			for _, b := range p.Bridges {
				ifs[b.In][b.Name] = true
			}
			// Every address of the plan, on the right interface, in
			// exactly the element that owns it.
			wantAddrs := map[string]bool{}
			for _, r := range p.Routers {
				for _, ifc := range r.Ifaces {
					for _, a := range ifc.Addrs {
						wantAddrs[r.Name+" "+ifc.Name+" "+a.String()] = true
					}
				}
			}
			for _, n := range p.Nodes {
				for _, ifc := range n.Ifaces {
					for _, a := range ifc.Addrs {
						wantAddrs[n.Name+" "+ifc.Name+" "+a.String()] = true
					}
				}
				for _, pod := range n.PodPlans {
					for _, a := range pod.Addrs {
						wantAddrs[pod.Name+" "+PodIf+" "+hostPrefix(a).String()] = true
					}
				}
			}
			for e, n := range topo.Topology.Nodes {
				for _, cmd := range n.Exec {
					m := clabAddrCmd.FindStringSubmatch(cmd)
					if m == nil {
						continue
					}
					if !ifs[e][m[2]] {
						t.Errorf("node %s: %q: no interface %s there", e, cmd, m[2])
					}
					key := e + " " + m[2] + " " + m[1]
					if m[1] == clabPodGateway4+"/32" || m[1] == clabPodGateway6+"/64" {
						continue // the pod gateways on the node side
					}
					if !wantAddrs[key] {
						t.Errorf("node %s: %q is not in the plan", e, cmd)
					}
					delete(wantAddrs, key)
				}
			}
			for k := range wantAddrs {
				t.Errorf("address not set anywhere: %s", k)
			}
			for _, n := range p.Nodes {
				exec := topo.Topology.Nodes[n.Name].Exec
				if len(exec) == 0 || exec[len(exec)-1] != "touch "+clabReadyFile {
					t.Errorf("node %s: the last exec command must release podrouted (touch %s)", n.Name, clabReadyFile)
				}
			}
		})
	}
}

// TestContainerlabConfigs: each podrouted.yaml is the plan's configuration
// and passes the daemon's own parsing and validation; each frr.conf is what
// frr.Config renders; each daemons file turns bgpd on.
func TestContainerlabConfigs(t *testing.T) {
	for _, name := range topology.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			p, files := clabGenerate(t, name)
			for _, n := range p.Nodes {
				data := files[name+"/"+n.Name+"/podrouted.yaml"]
				if _, err := config.Parse(data); err != nil {
					t.Errorf("node %s: podrouted.yaml does not pass config.Parse: %v\n%s", n.Name, err, data)
				}
				var got config.Config
				if err := yaml.UnmarshalStrict(data, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(&got, n.Config) {
					t.Errorf("node %s: podrouted.yaml reads back as\n%+v\nwant the plan's\n%+v", n.Name, got, *n.Config)
				}
			}
			for _, r := range p.Routers {
				if got, want := string(files[name+"/"+r.Name+"/frr.conf"]), frr.Config(r.Spec); got != want {
					t.Errorf("router %s: frr.conf is not frr.Config's:\n%s\nwant\n%s", r.Name, got, want)
				}
				daemons := string(files[name+"/"+r.Name+"/daemons"])
				if !regexp.MustCompile(`(?m)^bgpd=yes$`).MatchString(daemons) {
					t.Errorf("router %s: daemons file does not enable bgpd:\n%s", r.Name, daemons)
				}
			}
			if len(p.Routers) == 0 && len(p.Switches) == 0 {
				t.Errorf("topology %s has neither routers nor switches: nothing tested the bridges", name)
			}
		})
	}
}

// TestContainerlabDeterministic: two runs give the same bytes.
func TestContainerlabDeterministic(t *testing.T) {
	for _, name := range topology.BuiltinNames() {
		_, a := clabGenerate(t, name)
		_, b := clabGenerate(t, name)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs differ", name)
		}
	}
}

// TestContainerlabCompareAndWrite: --check finds a changed, a missing and a
// left-over file; writing repairs all three and leaves other files alone.
func TestContainerlabCompareAndWrite(t *testing.T) {
	dir := t.TempDir()
	_, files := clabGenerate(t, "flat")
	other := filepath.Join(dir, "README.md")
	if err := os.WriteFile(other, []byte("not generated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Write(dir, "flat", files); err != nil {
		t.Fatal(err)
	}
	if diffs, err := Compare(dir, "flat", files); err != nil || len(diffs) != 0 {
		t.Fatalf("fresh files: diffs %v, err %v", diffs, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "flat.clab.yml"), append(files["flat.clab.yml"], "# edited\n"...), 0o644))
	must(os.Remove(filepath.Join(dir, "flat", "node-2", "podrouted.yaml")))
	must(os.MkdirAll(filepath.Join(dir, "flat", "node-9"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "flat", "node-9", "podrouted.yaml"), []byte("old\n"), 0o644))
	diffs, err := Compare(dir, "flat", files)
	must(err)
	var got []string
	for _, d := range diffs {
		got = append(got, d.Path+" "+strings.Fields(d.Problem)[0])
	}
	want := []string{"flat.clab.yml differs", "flat/node-2/podrouted.yaml missing", "flat/node-9/podrouted.yaml not"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diffs %q, want %q", got, want)
	}
	written, removed, err := Write(dir, "flat", files)
	must(err)
	if len(written) != 2 || len(removed) != 1 {
		t.Errorf("written %v removed %v, want 2 and 1", written, removed)
	}
	if diffs, err := Compare(dir, "flat", files); err != nil || len(diffs) != 0 {
		t.Errorf("after writing: diffs %v, err %v", diffs, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "flat", "node-9")); !os.IsNotExist(err) {
		t.Errorf("empty directory flat/node-9 left behind (err %v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not the topology's was touched: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "flat", clabStartScript)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("start script mode: %v %v, want 0755", fi.Mode(), err)
	}
}

// TestContainerlabScalar: what clabScalar writes plain, YAML reads back
// as the same string.
func TestContainerlabScalar(t *testing.T) {
	for _, s := range []string{
		"leafspine", "alpine:3.20", "ip addr add fd00:10:1::b/64 dev eth-rack-1", "yes", "No", "on", "1500",
		"8.4.1", "1:30", "a: b", "x #y", "- a", "-w", "quote\"d", "back\\slash", "tab\there", "trailing:",
		"[flow]", "{map}", "*alias", "&anchor", "!tag", "%directive", "@at", "`tick`", "|", ">", "'single'",
		"sysctl -w net.ipv4.conf.l-node-1.rp_filter=0", "null", "~", "", " leading", "trailing ",
	} {
		doc := "v: " + clabScalar(s) + "\n"
		var got map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &got); err != nil {
			t.Errorf("%q written as %q: %v", s, doc, err)
			continue
		}
		if got["v"] != s {
			t.Errorf("%q written as %q reads back as %#v", s, doc, got["v"])
		}
	}
}
