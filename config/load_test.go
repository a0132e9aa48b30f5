package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseYAML is a valid file, one top-level key per entry, so that a test
// can replace one key with its own lines.
var baseYAML = []struct{ key, lines string }{
	{"nodeName", "nodeName: node-a1"},
	{"routerID", "routerID: 192.0.2.11"},
	{"asn", "asn: 4200000011"},
	{"podCIDRs", "podCIDRs: [10.244.1.0/24, fd00:10:244:1::/64]"},
	{"podPools", "podPools: [10.244.0.0/16, fd00:10:244::/56]"},
	{"nodeAddresses", "nodeAddresses: [192.0.2.11]"},
	{"peers", "peers:\n- address: 192.0.2.1\n  asn: 4200000001"},
}

// fileWith returns baseYAML with the keys of repl replaced by (or, for new
// keys, followed by) the given lines.
func fileWith(repl map[string]string) []byte {
	var b strings.Builder
	done := map[string]bool{}
	for _, kv := range baseYAML {
		lines := kv.lines
		if r, ok := repl[kv.key]; ok {
			lines, done[kv.key] = r, true
		}
		b.WriteString(lines + "\n")
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range repl {
			if !yield(k) {
				return
			}
		}
	}) {
		if !done[k] {
			b.WriteString(repl[k] + "\n")
		}
	}
	return []byte(b.String())
}

// decoderText is what encoding/json and sigs.k8s.io/yaml say about a type
// mismatch; no message may contain it.
var decoderText = []string{"json:", "unmarshal", "Go struct", "Go value", "uint32", "int32", "uint8"}

func checkNoDecoderText(t *testing.T, err error) {
	t.Helper()
	for _, s := range decoderText {
		if strings.Contains(err.Error(), s) {
			t.Errorf("message has decoder text %q: %v", s, err)
		}
	}
}

func TestBaseYAMLIsValid(t *testing.T) {
	if _, err := Parse(fileWith(nil)); err != nil {
		t.Fatalf("base file rejected: %v", err)
	}
}

// TestParseTypeErrors: a value of the wrong type, or too large for its
// field, gets the same kind of message as any other config error: the
// field path, the value as written, and what is allowed.
func TestParseTypeErrors(t *testing.T) {
	peer := func(extra string) map[string]string {
		return map[string]string{"peers": "peers:\n- address: 192.0.2.1\n  asn: 4200000001\n  " + extra}
	}
	tests := []struct {
		name  string
		repl  map[string]string
		field string
		value string
		also  []string // in the message
	}{
		// The cases of issue 8.
		{"asn quoted", map[string]string{"asn": `asn: "65201"`}, "asn", "65201", []string{"must be 1..4294967294 (not 23456, AS_TRANS)", "without quotes"}},
		{"asn negative", map[string]string{"asn": "asn: -1"}, "asn", "-1", []string{"must be 1..4294967294"}},
		{"asn over 32 bits", map[string]string{"asn": "asn: 4294967296"}, "asn", "4294967296", []string{"must be 1..4294967294"}},
		{"podCIDRs a string", map[string]string{"podCIDRs": "podCIDRs: 10.244.1.0/24"}, "podCIDRs", "10.244.1.0/24", []string{"must be a list", "[10.244.1.0/24]"}},
		{"peers a string", map[string]string{"peers": "peers: 10.10.1.1"}, "peers", "10.10.1.1", []string{"must be a list of mappings", "address, asn"}},
		{"maxPrefixes negative", peer("maxPrefixes: -1"), "peers[0].maxPrefixes", "-1", []string{"must be 1..10000000", "no unlimited"}},
		{"multihopTTL over a byte", peer("multihopTTL: 256"), "peers[0].multihopTTL", "256", []string{"must be 0..255"}},
		// More of the same kind.
		{"asn fraction", map[string]string{"asn": "asn: 65001.5"}, "asn", "65001.5", []string{"whole number"}},
		{"asn word", map[string]string{"asn": "asn: sixty"}, "asn", "sixty", []string{"a number"}},
		{"asn boolean", map[string]string{"asn": "asn: true"}, "asn", "true", []string{"a number"}},
		{"asn list", map[string]string{"asn": "asn: [65001]"}, "asn", "[65001]", []string{"not a list"}},
		{"asn far over 32 bits", map[string]string{"asn": "asn: 9999999999999"}, "asn", "9999999999999", []string{"must be 1..4294967294"}},
		{"listenPort over 32 bits", map[string]string{"listenPort": "listenPort: 4294967296"}, "listenPort", "4294967296", []string{"0 (do not listen) or 1..65535"}},
		{"listenPort quoted", map[string]string{"listenPort": `listenPort: "179"`}, "listenPort", "179", []string{"without quotes"}},
		{"routeProtocol quoted", map[string]string{"routeProtocol": `routeProtocol: "201"`}, "routeProtocol", "201", []string{"199..255"}},
		{"routeTable fraction", map[string]string{"routeTable": "routeTable: 254.5"}, "routeTable", "254.5", []string{"253 and 255"}},
		{"routeTable over 64 bits", map[string]string{"routeTable": "routeTable: 1e30"}, "routeTable", "1e+30", []string{"253 and 255"}},
		{"cniMTU mapping", map[string]string{"cniMTU": "cniMTU: {mtu: 1500}"}, "cniMTU", `{"mtu":1500}`, []string{"1280..65535", "not a mapping"}},
		{"peer asn quoted", map[string]string{"peers": "peers:\n- address: 192.0.2.1\n  asn: \"65001\""}, "peers[0].asn", "65001", []string{"without quotes"}},
		{"peer port negative", peer("port: -179"), "peers[0].port", "-179", []string{"1..65535"}},
		{"peer multihopTTL negative", peer("multihopTTL: -1"), "peers[0].multihopTTL", "-1", []string{"0..255"}},
		{"peer maxPrefixes quoted", peer(`maxPrefixes: "5000"`), "peers[0].maxPrefixes", "5000", []string{"without quotes"}},
		{"bool quoted", map[string]string{"transit": `transit: "true"`}, "transit", "true", []string{"true or false, without quotes"}},
		{"bool number", map[string]string{"importDefaultRoute": "importDefaultRoute: 1"}, "importDefaultRoute", "1", []string{"true or false"}},
		{"peer bool word", peer(`passive: "no"`), "peers[0].passive", "no", []string{"true or false"}},
		{"pointer bool", map[string]string{"gracefulRestart": "gracefulRestart:\n  enabled: [true]"}, "gracefulRestart.enabled", "[true]", []string{"true or false"}},
		{"struct a scalar", map[string]string{"gracefulRestart": "gracefulRestart: true"}, "gracefulRestart", "true", []string{"must be a mapping", "enabled, restartTime"}},
		{"struct a list", map[string]string{"gracefulRestart": "gracefulRestart: [on]"}, "gracefulRestart", `[true]`, []string{"must be a mapping", "not a list"}},
		{"list item a scalar where a mapping belongs", map[string]string{"peers": "peers: [10.10.1.1]"}, "peers[0]", "10.10.1.1", []string{"must be a mapping", "address"}},
		{"list a mapping", map[string]string{"podPools": "podPools: {v4: 10.244.0.0/16}"}, "podPools", `{"v4":"10.244.0.0/16"}`, []string{"must be a list", "not a mapping"}},
		{"list of strings a number", map[string]string{"nodeAddresses": "nodeAddresses: 5"}, "nodeAddresses", "5", []string{"must be a list"}},
		{"string a list", map[string]string{"nodeName": "nodeName: [a, b]"}, "nodeName", `["a","b"]`, []string{"must be a string, not a list"}},
		{"string item a number", map[string]string{"podPools": "podPools: [10.244.0.0/16, 7]"}, "podPools[1]", "7", []string{"put it in quotes"}},
		{"duration a number", peer("holdTime: 90"), "peers[0].holdTime", "90", []string{"with a unit"}},
		{"duration a list", map[string]string{"resyncInterval": "resyncInterval: [30s]"}, "resyncInterval", `["30s"]`, []string{"with a unit"}},
		{"password a list, not shown", peer("password: [secret]"), "peers[0].password", "<not shown>", []string{"must be a string, not a list"}},
		{"password a number, not shown", peer("password: 012345"), "peers[0].password", "<not shown>", []string{"put it in quotes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(fileWith(tt.repl))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			checkNoDecoderText(t, err)
			fes := FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("want exactly one error (the value is left out, not also reported missing), got %d: %v", len(fes), err)
			}
			fe := fes[0]
			if fe.Field != tt.field || fe.Value != tt.value {
				t.Errorf("got field %q value %q, want %q %q: %v", fe.Field, fe.Value, tt.field, tt.value, fe)
			}
			if want := fmt.Sprintf("%s: invalid value %q: ", tt.field, tt.value); !strings.HasPrefix(fe.Error(), want) {
				t.Errorf("message %q does not start %q", fe, want)
			}
			for _, also := range tt.also {
				if !strings.Contains(fe.Error(), also) {
					t.Errorf("message %q does not say %q", fe, also)
				}
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "5349") {
				t.Errorf("message repeats a password: %v", err)
			}
		})
	}
}

// A mistyped value is one problem among others: every problem of the file,
// of either kind, is reported at once, the decoder's first.
func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(fileWith(map[string]string{
		"asn":      `asn: "65201"`,
		"logLevel": "logLevel: loud",
		"peers":    "peers:\n- address: 10.10.1.1\n  asn: 65101\n  maxPrefixes: -1\n  multihopTTL: 256\n- address: not-an-ip\n  asn: 65101\n  port: 1e10",
		"transit":  "transit: yes please",
		"bogus":    "bogus: 1",
	}))
	checkNoDecoderText(t, err)
	var got []string
	for _, fe := range FieldErrors(err) {
		got = append(got, fe.Field)
	}
	want := []string{"asn", "bogus", "peers[0].maxPrefixes", "peers[0].multihopTTL", "peers[1].port", "transit", "logLevel", "peers[1].address"}
	if !slices.Equal(got, want) {
		t.Errorf("reported %v, want %v\n%v", got, want, err)
	}
}

// Every key of every type, given a value of each wrong kind, gets a
// FieldError naming it, never the decoder's text.
func TestEveryKeyRejectsEveryWrongKind(t *testing.T) {
	wrong := map[string][]string{
		"string":   {`1234`, `true`, `["a"]`, `{"a":1}`},
		"bool":     {`"true"`, `1`, `[true]`, `{"a":1}`},
		"integer":  {`"1"`, `1.5`, `-1`, `1e30`, `true`, `[1]`, `{"a":1}`, `"x"`},
		"duration": {`90`, `"90x"`, `true`, `["1s"]`, `{"a":1}`},
		"list":     {`"x"`, `5`, `true`, `{"a":1}`, `[[1]]`, `[{"a":1}]`},
		"mapping":  {`"x"`, `5`, `true`, `[1]`},
	}
	var walk func(path string, t reflect.Type, build func(string) string)
	type leaf struct {
		path, kind string
		build      func(string) string
	}
	var leaves []leaf
	walk = func(path string, ft reflect.Type, build func(string) string) {
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == durationType:
			leaves = append(leaves, leaf{path, "duration", build})
		case ft.Kind() == reflect.String:
			leaves = append(leaves, leaf{path, "string", build})
		case ft.Kind() == reflect.Bool:
			leaves = append(leaves, leaf{path, "bool", build})
		case isInteger(ft):
			leaves = append(leaves, leaf{path, "integer", build})
		case ft.Kind() == reflect.Slice:
			leaves = append(leaves, leaf{path, "list", build})
			walk(path+"[0]", ft.Elem(), func(v string) string { return build("[" + v + "]") })
		case ft.Kind() == reflect.Struct:
			if path != "" {
				leaves = append(leaves, leaf{path, "mapping", build})
			}
			for name, sub := range jsonFields(ft) {
				walk(join(path, name), sub, func(v string) string { return build(`{"` + name + `":` + v + `}`) })
			}
		default:
			t.Errorf("%s: kind %s has no wrong values to try; add them", path, ft.Kind())
		}
	}
	walk("", reflect.TypeFor[Config](), func(v string) string { return v })
	if len(leaves) < 40 {
		t.Fatalf("walked only %d keys", len(leaves))
	}
	for _, l := range leaves {
		for _, v := range wrong[l.kind] {
			doc := l.build(v)
			c, err := decode([]byte(doc))
			if err == nil && c != nil {
				// Right type, wrong value (asn: -1 fits an int field):
				// then validation must name it.
				c.ApplyDefaults()
				err = c.Validate()
			}
			if err == nil {
				// Some wrong kinds are right for some keys (a number for
				// an int, a list item of the right type).
				if !(l.kind == "integer" && v == "-1") && !(l.kind == "list" && strings.HasPrefix(v, "[")) {
					t.Errorf("%s = %s: accepted", l.path, v)
				}
				continue
			}
			checkNoDecoderText(t, err)
			named := false
			for _, fe := range FieldErrors(err) {
				named = named || fe.Field == l.path || strings.HasPrefix(fe.Field, l.path+"[") || strings.HasPrefix(fe.Field, l.path+".")
			}
			if !named {
				t.Errorf("%s = %s: no error names the key: %v", l.path, v, err)
			}
		}
	}
}

// TestEveryIntegerKeyHasARule: a type error on an integer key quotes the
// same rule Validate does, so each one needs a rule.
func TestEveryIntegerKeyHasARule(t *testing.T) {
	var walk func(path string, ft reflect.Type)
	walk = func(path string, ft reflect.Type) {
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isInteger(ft):
			if _, ok := numberRules[path]; !ok {
				t.Errorf("integer key %s has no entry in numberRules", path)
			}
		case ft.Kind() == reflect.Slice:
			walk(path+"[]", ft.Elem())
		case ft.Kind() == reflect.Struct && ft != durationType:
			for name, sub := range jsonFields(ft) {
				walk(join(path, name), sub)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}

// A value pasted by mistake (a certificate, a whole file) must not be
// echoed into the log in full.
func TestLongValuesAreCut(t *testing.T) {
	huge := strings.Repeat("n", 10<<20)
	for name, repl := range map[string]map[string]string{
		"nodeName":     {"nodeName": "nodeName: " + huge},
		"list":         {"podCIDRs": "podCIDRs: " + huge},
		"unknown key":  {"x": strings.Repeat("k", 1000) + ": 1"}, // YAML allows 1024 bytes
		"integer":      {"asn": "asn: " + huge},
		"list item":    {"nodeAddresses": "nodeAddresses: [" + huge + "]"},
		"utf-8 intact": {"nodeName": "nodeName: " + strings.Repeat("é", 1000)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(fileWith(repl))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			msg := err.Error()
			if len(msg) > 1000 {
				t.Errorf("message is %d bytes: %.300s...", len(msg), msg)
			}
			if !strings.Contains(msg, "…") || !strings.Contains(msg, " bytes)") {
				t.Errorf("message does not mark the cut and the length: %.300s", msg)
			}
			if !json.Valid([]byte(fmt.Sprintf("%q", msg))) || !strings.Contains(msg, "invalid value") {
				t.Errorf("message: %.300s", msg)
			}
			if strings.Contains(msg, "\\x") {
				t.Errorf("a character was cut in half: %.300s", msg)
			}
		})
	}
	fe := &FieldError{Field: "nodeName", Value: huge, Allowed: "must be short"}
	want := fmt.Sprintf("nodeName: invalid value %q (%d bytes): must be short", strings.Repeat("n", maxShownValue)+"…", len(huge))
	if fe.Error() != want {
		t.Errorf("Error() = %.200q, want %q", fe.Error(), want)
	}
	if fe := (&FieldError{Field: "f", Value: strings.Repeat("v", maxShownValue)}); strings.Contains(fe.Error(), "…") {
		t.Errorf("a value of exactly %d bytes was cut: %s", maxShownValue, fe)
	}
}

// A duration error quotes the duration as the file wrote it.
func TestDurationErrorsQuoteTheFile(t *testing.T) {
	peer := func(extra string) map[string]string {
		return map[string]string{"peers": "peers:\n- address: 192.0.2.1\n  asn: 4200000001\n  " + extra}
	}
	for _, tt := range []struct {
		name         string
		repl         map[string]string
		field, value string
		also         string
	}{
		{"hold time over 16 bits", peer("holdTime: 65536s"), "peers[0].holdTime", "65536s", "3s..65535s"},
		{"hold time in minutes", peer("holdTime: 1200m"), "peers[0].holdTime", "1200m", "3s..65535s"},
		{"keepalive not below hold", peer("holdTime: 90s\n  keepaliveInterval: 90s"), "peers[0].keepaliveInterval", "90s", "less than holdTime (90s)"},
		{"restart time", map[string]string{"gracefulRestart": "gracefulRestart:\n  restartTime: 4096s"}, "gracefulRestart.restartTime", "4096s", "1s..4095s"},
		{"stale timeout", map[string]string{"gracefulRestart": "gracefulRestart:\n  staleRouteTimeout: 7200s"}, "gracefulRestart.staleRouteTimeout", "7200s", "1s..1h"},
		{"resync fraction of a second", map[string]string{"resyncInterval": "resyncInterval: 500000us"}, "resyncInterval", "500000us", "at least 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(fileWith(tt.repl))
			fes := FieldErrors(err)
			if len(fes) != 1 || fes[0].Field != tt.field || fes[0].Value != tt.value || !strings.Contains(fes[0].Error(), tt.also) {
				t.Errorf("got %v, want %s %q saying %q", err, tt.field, tt.value, tt.also)
			}
		})
	}
	// A value that no longer is what the file said (an override, a
	// default) is shown as it is.
	c, err := decode(fileWith(peer("holdTime: 65536s")))
	if err != nil {
		t.Fatal(err)
	}
	c.Peers[0].HoldTime = dur(70000e9)
	c.ApplyDefaults()
	if fes := FieldErrors(c.Validate()); len(fes) != 1 || fes[0].Value != "19h26m40s" {
		t.Errorf("changed hold time: %v", fes)
	}
}

// Read returns what it could decode with the problems; Load and Parse
// report those problems with the others, and no "required" for a value
// that was there but of the wrong type.
func TestReadLeavesMistypedValuesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podrouted.yaml")
	if err := os.WriteFile(path, fileWith(map[string]string{"asn": `asn: "65201"`, "logLevel": "logLevel: loud"}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Read(path)
	if err == nil || c == nil {
		t.Fatalf("Read = %v, %v: want the config and the error", c, err)
	}
	if c.NodeName != "node-a1" || c.ASN != 0 || len(c.Peers) != 1 {
		t.Errorf("Read kept %+v", c)
	}
	if fes := FieldErrors(err); len(fes) != 1 || fes[0].Field != "asn" || !strings.Contains(err.Error(), path) {
		t.Errorf("Read error %v: want asn alone, naming the file", err)
	}
	// What the daemon does: override, defaults, validate.
	c.Override(Overrides{LogLevel: "debug"})
	c.ApplyDefaults()
	fes := FieldErrors(c.Validate())
	if len(fes) != 1 || fes[0].Field != "asn" || fes[0].Value != "65201" {
		t.Errorf("Validate after Read: %v", fes)
	}
	_, err = Load(path)
	if fes := FieldErrors(err); len(fes) != 2 || fes[0].Field != "asn" || fes[1].Field != "logLevel" || !strings.Contains(err.Error(), path) {
		t.Errorf("Load: %v", err)
	}
	// Not YAML at all: no config.
	os.WriteFile(path, []byte("asn: [1\n"), 0o600)
	if c, err := Read(path); c != nil || err == nil {
		t.Errorf("Read of broken YAML = %v, %v", c, err)
	}
}

// A restart time above the stale timeout's limit (1h) is valid, and the
// stale timeout it defaults to must be too.
func TestLongRestartTimeDefaultsAValidStaleTimeout(t *testing.T) {
	c, err := Parse(fileWith(map[string]string{"gracefulRestart": "gracefulRestart:\n  restartTime: 4000s"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.GracefulRestart.StaleRouteTimeout.Duration; got != time.Hour {
		t.Errorf("staleRouteTimeout %v, want 1h", got)
	}
}

// cniChain: absent means the default chain, [] means none, and both
// survive a round trip through the file.
func TestCNIChainAbsentOrEmpty(t *testing.T) {
	for _, tt := range []struct {
		name, lines string
		want        []string
	}{
		{"absent", "", []string{"portmap", "bandwidth"}},
		{"empty", "cniChain: []", []string{}},
		{"one", "cniChain: [bandwidth]", []string{"bandwidth"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repl := map[string]string{}
			if tt.lines != "" {
				repl["cniChain"] = tt.lines
			}
			c, err := Parse(fileWith(repl))
			if err != nil {
				t.Fatal(err)
			}
			if c.CNIChain == nil || !slices.Equal(c.CNIChain, tt.want) || c.CNIVersion != "1.0.0" {
				t.Errorf("cniChain %#v cniVersion %q, want %#v and 1.0.0", c.CNIChain, c.CNIVersion, tt.want)
			}
		})
	}
	_, err := Parse(fileWith(map[string]string{"cniChain": "cniChain: portmap", "cniVersion": "cniVersion: 1.1"}))
	fes := FieldErrors(err)
	if len(fes) != 2 || fes[0].Field != "cniChain" || !strings.Contains(fes[0].Allowed, "[portmap]") || fes[1].Field != "cniVersion" || fes[1].Value != "1.1" {
		t.Errorf("got %v", err)
	}
}
