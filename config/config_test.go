package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// validConfig is a dual-stack node with one IPv4 and one IPv6 peer, with
// defaults applied. Every test case changes one thing in it.
func validConfig() *Config {
	c := &Config{
		NodeName:        "node-a1",
		RouterID:        "192.0.2.11",
		ASN:             4200000011,
		ListenAddresses: []string{"192.0.2.11"},
		PodCIDRs:        []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
		PodPools:        []string{"10.244.0.0/16", "fd00:10:244::/56"},
		NodeAddresses:   []string{"192.0.2.11", "2001:db8:0:1::11"},
		Peers: []Peer{
			{Address: "192.0.2.1", ASN: 4200000001},
			{Address: "2001:db8:0:1::1", ASN: 4200000001},
		},
	}
	c.ApplyDefaults()
	return c
}

func dur(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }
func ptr[T any](v T) *T                   { return &v }

// withoutReadNotes returns a copy of c without what Read noted about the
// file (durations as written), for comparing a parsed config with one
// built in code.
func withoutReadNotes(c *Config) *Config {
	cp := *c
	cp.read = readNotes{}
	return &cp
}

func TestValidConfigPasses(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("baseline config rejected: %v", err)
	}
}

func TestExampleFileLoads(t *testing.T) {
	c, err := Load("example.yaml")
	if err != nil {
		t.Fatalf("Load(example.yaml): %v", err)
	}
	// The example promises dual stack and two peers; check it keeps that.
	var v4, v6 bool
	for _, p := range c.PodCIDRPrefixes() {
		v4 = v4 || p.Addr().Is4()
		v6 = v6 || p.Addr().Is6()
	}
	if !v4 || !v6 {
		t.Errorf("example pod CIDRs %v: want one IPv4 and one IPv6", c.PodCIDRs)
	}
	if len(c.Peers) != 2 || c.Peers[0].Addr().Is4() == c.Peers[1].Addr().Is4() {
		t.Errorf("example peers %+v: want one IPv4 and one IPv6 peer", c.Peers)
	}
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("x", maxPasswordBytes+1)
	tests := []struct {
		name   string
		mutate func(c *Config)
		field  string
		value  string
		// also, if set, must appear in the message.
		also string
	}{
		{"missing nodeName", func(c *Config) { c.NodeName = "" }, "nodeName", "", "DNS-1123"},
		{"nodeName not DNS-1123", func(c *Config) { c.NodeName = "Node_A" }, "nodeName", "Node_A", ""},
		{"routerID IPv6", func(c *Config) { c.RouterID = "2001:db8::1" }, "routerID", "2001:db8::1", "IPv4"},
		{"routerID garbage", func(c *Config) { c.RouterID = "abc" }, "routerID", "abc", ""},
		{"routerID zero", func(c *Config) { c.RouterID = "0.0.0.0" }, "routerID", "0.0.0.0", ""},
		{"asn 0", func(c *Config) { c.ASN = 0 }, "asn", "0", "AS_TRANS"},
		{"asn AS_TRANS", func(c *Config) { c.ASN = 23456 }, "asn", "23456", ""},
		{"asn max", func(c *Config) { c.ASN = 4294967295 }, "asn", "4294967295", ""},
		{"listen address", func(c *Config) { c.ListenAddresses = []string{"nope"} }, "listenAddresses[0]", "nope", ""},
		{"listen port negative", func(c *Config) { c.ListenPort = ptr(int32(-1)) }, "listenPort", "-1", ""},
		{"listen port too big", func(c *Config) { c.ListenPort = ptr(int32(65536)) }, "listenPort", "65536", ""},
		{"pod CIDR invalid", func(c *Config) { c.PodCIDRs[0] = "10.244.1.0/33" }, "podCIDRs[0]", "10.244.1.0/33", ""},
		{"pod CIDR host bits", func(c *Config) { c.PodCIDRs[0] = "10.244.1.5/24" }, "podCIDRs[0]", "10.244.1.5/24", "use 10.244.1.0/24"},
		{"pod CIDR v6 host bits", func(c *Config) { c.PodCIDRs[1] = "fd00:10:244:1::1/64" }, "podCIDRs[1]", "fd00:10:244:1::1/64", "use fd00:10:244:1::/64"},
		{"two IPv4 pod CIDRs", func(c *Config) { c.PodCIDRs = append(c.PodCIDRs, "10.244.2.0/24") }, "podCIDRs[2]", "10.244.2.0/24", "podCIDRs[0]"},
		{"pod CIDR outside pools", func(c *Config) { c.PodCIDRs[0] = "10.99.0.0/24" }, "podCIDRs[0]", "10.99.0.0/24", "10.244.0.0/16"},
		{"pod CIDR wider than pool", func(c *Config) { c.PodCIDRs[0] = "10.0.0.0/8" }, "podCIDRs[0]", "10.0.0.0/8", ""},
		{"no pool of the family", func(c *Config) { c.PodPools = c.PodPools[:1] }, "podCIDRs[1]", "fd00:10:244:1::/64", "no IPv6 pool"},
		{"no pools", func(c *Config) { c.PodPools = nil }, "podPools", "[]", ""},
		{"pool /0", func(c *Config) { c.PodPools[0] = "0.0.0.0/0" }, "podPools[0]", "0.0.0.0/0", "importDefaultRoute"},
		{"pool host bits", func(c *Config) { c.PodPools[0] = "10.244.1.0/16" }, "podPools[0]", "10.244.1.0/16", "use 10.244.0.0/16"},
		{"node address zone", func(c *Config) { c.NodeAddresses[1] = "fe80::1%eth0" }, "nodeAddresses[1]", "fe80::1%eth0", ""},
		{"node address mapped", func(c *Config) { c.NodeAddresses[1] = "::ffff:192.0.2.12" }, "nodeAddresses[1]", "::ffff:192.0.2.12", ""},
		{"protocol zebra", func(c *Config) { c.RouteProtocol = 11 }, "routeProtocol", "11", "zebra"},
		{"protocol bird", func(c *Config) { c.RouteProtocol = 12 }, "routeProtocol", "12", "bird"},
		{"protocol babel", func(c *Config) { c.RouteProtocol = 42 }, "routeProtocol", "42", "babel"},
		{"protocol FRR bgp", func(c *Config) { c.RouteProtocol = 186 }, "routeProtocol", "186", "FRR"},
		{"protocol FRR srte", func(c *Config) { c.RouteProtocol = 198 }, "routeProtocol", "198", "FRR"},
		{"protocol kernel static", func(c *Config) { c.RouteProtocol = 4 }, "routeProtocol", "4", "kernel"},
		{"protocol keepalived", func(c *Config) { c.RouteProtocol = 18 }, "routeProtocol", "18", "17..18: mrouted, keepalived"},
		{"protocol openr", func(c *Config) { c.RouteProtocol = 99 }, "routeProtocol", "99", "99: openr"},
		{"protocol negative", func(c *Config) { c.RouteProtocol = -1 }, "routeProtocol", "-1", "5..7"},
		{"protocol too big", func(c *Config) { c.RouteProtocol = 256 }, "routeProtocol", "256", "199..255"},
		{"table local", func(c *Config) { c.RouteTable = 255 }, "routeTable", "255", "local"},
		{"table default", func(c *Config) { c.RouteTable = 253 }, "routeTable", "253", "default"},
		{"table negative", func(c *Config) { c.RouteTable = -1 }, "routeTable", "-1", ""},
		{"table too big", func(c *Config) { c.RouteTable = 1 << 32 }, "routeTable", "4294967296", ""},
		{"resync too short", func(c *Config) { c.ResyncInterval = dur(500 * time.Millisecond) }, "resyncInterval", "500ms", ""},
		{"max-prefix hold too long", func(c *Config) { c.MaxPrefixHoldTime = dur(2 * time.Hour) }, "maxPrefixHoldTime", (2 * time.Hour).String(), "1s..1h"},
		{"restart time over 12 bits", func(c *Config) { c.GracefulRestart.RestartTime = dur(4096 * time.Second) }, "gracefulRestart.restartTime", (4096 * time.Second).String(), ""},
		{"restart time fraction", func(c *Config) { c.GracefulRestart.RestartTime = dur(1500 * time.Millisecond) }, "gracefulRestart.restartTime", "1.5s", "whole seconds"},
		{"stale timeout too long", func(c *Config) { c.GracefulRestart.StaleRouteTimeout = dur(2 * time.Hour) }, "gracefulRestart.staleRouteTimeout", (2 * time.Hour).String(), ""},
		{"socket relative", func(c *Config) { c.GRPCSocket = "run/podrouted.sock" }, "grpcSocket", "run/podrouted.sock", "absolute"},
		{"socket too long", func(c *Config) { c.GRPCSocket = "/" + strings.Repeat("s", maxSocketPath) }, "grpcSocket", "/" + strings.Repeat("s", maxShownValue-1) + "…", "(108 bytes)"},
		{"gobgp API on all addresses", func(c *Config) { c.GoBGPAPI = "0.0.0.0:50051" }, "gobgpAPI", "0.0.0.0:50051", "no authentication"},
		{"gobgp API on node address", func(c *Config) { c.GoBGPAPI = "192.0.2.11:50051" }, "gobgpAPI", "192.0.2.11:50051", "loopback"},
		{"gobgp API host name", func(c *Config) { c.GoBGPAPI = "localhost:50051" }, "gobgpAPI", "localhost:50051", ""},
		{"gobgp API without port", func(c *Config) { c.GoBGPAPI = "127.0.0.1" }, "gobgpAPI", "127.0.0.1", ""},
		{"metrics address", func(c *Config) { c.MetricsAddress = "9254" }, "metricsAddress", "9254", ""},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, "logLevel", "verbose", "debug, info, warn, error"},
		{"CNI version unknown", func(c *Config) { c.CNIVersion = "1.2.0" }, "cniVersion", "1.2.0", "0.3.1, 0.4.0, 1.0.0, 1.1.0"},
		{"CNI version short", func(c *Config) { c.CNIVersion = "1.0" }, "cniVersion", "1.0", "containerd 1.6"},
		{"CNI chain unknown plugin", func(c *Config) { c.CNIChain = []string{"portmap", "tuning"} }, "cniChain[1]", "tuning", "portmap, bandwidth"},
		{"CNI chain twice", func(c *Config) { c.CNIChain = []string{"bandwidth", "bandwidth"} }, "cniChain[1]", "bandwidth", "cniChain[0]"},
		{"peer address garbage", func(c *Config) { c.Peers[0].Address = "tor-a" }, "peers[0].address", "tor-a", ""},
		{"peer address multicast", func(c *Config) { c.Peers[0].Address = "224.0.0.5" }, "peers[0].address", "224.0.0.5", "unicast"},
		{"peer address IPv6 multicast", func(c *Config) { c.Peers[1].Address = "ff02::2" }, "peers[1].address", "ff02::2", "multicast"},
		{"peer address limited broadcast", func(c *Config) { c.Peers[0].Address = "255.255.255.255" }, "peers[0].address", "255.255.255.255", "limited broadcast"},
		{"peer address unspecified", func(c *Config) { c.Peers[0].Address = "0.0.0.0" }, "peers[0].address", "0.0.0.0", "unspecified"},
		{"peer address IPv6 unspecified", func(c *Config) { c.Peers[1].Address = "::" }, "peers[1].address", "::", "unspecified"},
		{"peer address loopback", func(c *Config) { c.Peers[0].Address = "127.0.0.1" }, "peers[0].address", "127.0.0.1", "loopback"},
		{"peer address loopback 127/8", func(c *Config) { c.Peers[0].Address = "127.1.2.3" }, "peers[0].address", "127.1.2.3", "loopback"},
		{"peer address IPv6 loopback", func(c *Config) { c.Peers[1].Address = "::1" }, "peers[1].address", "::1", "loopback"},
		{"peer address IPv4 link-local", func(c *Config) { c.Peers[0].Address = "169.254.1.1" }, "peers[0].address", "169.254.1.1", "link-local"},
		{"peer is the router ID, no nodeAddresses", func(c *Config) {
			c.NodeAddresses, c.ListenAddresses = nil, nil
			c.Peers[0].Address = c.RouterID
		}, "peers[0].address", "192.0.2.11", "routerID"},
		{"peer is a node address that is not the router ID", func(c *Config) {
			c.NodeAddresses = append(c.NodeAddresses, "192.0.2.12")
			c.Peers[0].Address = "192.0.2.12"
		}, "peers[0].address", "192.0.2.12", "nodeAddresses[2]"},
		{"peer is a listen address", func(c *Config) {
			c.NodeAddresses = nil
			c.ListenAddresses = []string{"192.0.2.13"}
			c.Peers[0].Address = "192.0.2.13"
		}, "peers[0].address", "192.0.2.13", "listenAddresses[0]"},
		{"peer inside own pod CIDR", func(c *Config) { c.Peers[0].Address = "10.244.1.7" }, "peers[0].address", "10.244.1.7", "10.244.1.0/24"},
		{"peer inside own v6 pod CIDR", func(c *Config) { c.Peers[1].Address = "fd00:10:244:1::7" }, "peers[1].address", "fd00:10:244:1::7", "fd00:10:244:1::/64"},
		{"peer is this node", func(c *Config) { c.Peers[1].Address = "2001:db8:0:1::11" }, "peers[1].address", "2001:db8:0:1::11", "nodeAddresses[1]"},
		{"duplicate IPv4 peer", func(c *Config) {
			p := c.Peers[0]
			c.Peers = append(c.Peers, p)
		}, "peers[2].address", "192.0.2.1", "peers[0]"},
		{"duplicate IPv6 peer spelled differently", func(c *Config) {
			p := c.Peers[1]
			p.Address = "2001:DB8:0:1:0::1"
			c.Peers = append(c.Peers, p)
		}, "peers[2].address", "2001:DB8:0:1:0::1", "peers[1]"},
		{"peer asn", func(c *Config) { c.Peers[1].ASN = 0 }, "peers[1].asn", "0", "AS_TRANS"},
		{"peer asn AS_TRANS", func(c *Config) { c.Peers[0].ASN = 23456 }, "peers[0].asn", "23456", ""},
		{"local address other family", func(c *Config) { c.Peers[1].LocalAddress = "192.0.2.11" }, "peers[1].localAddress", "192.0.2.11", "IPv6"},
		{"peer port", func(c *Config) { c.Peers[0].Port = 70000 }, "peers[0].port", "70000", ""},
		{"passive but not listening", func(c *Config) {
			c.ListenPort = ptr(int32(0))
			c.Peers[0].Passive = true
		}, "peers[0].passive", "true", "listenPort"},
		{"hold time too short", func(c *Config) { c.Peers[0].HoldTime = dur(2 * time.Second) }, "peers[0].holdTime", "2s", ""},
		{"hold time zero", func(c *Config) { c.Peers[0].HoldTime = dur(0) }, "peers[0].holdTime", "0s", ""},
		{"hold time over 16 bits", func(c *Config) { c.Peers[0].HoldTime = dur(65536 * time.Second) }, "peers[0].holdTime", (65536 * time.Second).String(), ""},
		{"hold time fraction", func(c *Config) { c.Peers[0].HoldTime = dur(3500 * time.Millisecond) }, "peers[0].holdTime", "3.5s", ""},
		{"keepalive equals hold", func(c *Config) {
			c.Peers[0].HoldTime, c.Peers[0].KeepaliveInterval = dur(9*time.Second), dur(9*time.Second)
		}, "peers[0].keepaliveInterval", "9s", "less than holdTime"},
		{"keepalive above hold", func(c *Config) { c.Peers[1].KeepaliveInterval = dur(2 * time.Minute) }, "peers[1].keepaliveInterval", "2m0s", ""},
		{"keepalive fraction", func(c *Config) { c.Peers[0].KeepaliveInterval = dur(1500 * time.Millisecond) }, "peers[0].keepaliveInterval", "1.5s", ""},
		{"connect retry zero", func(c *Config) { c.Peers[0].ConnectRetry = dur(0) }, "peers[0].connectRetry", "0s", ""},
		{"password too long", func(c *Config) { c.Peers[0].Password = long }, "peers[0].password", fmt.Sprintf("<%d bytes>", len(long)), "80"},
		{"max prefixes zero", func(c *Config) { c.Peers[0].MaxPrefixes = 0 }, "peers[0].maxPrefixes", "0", ""},
		{"max prefixes too many", func(c *Config) { c.Peers[0].MaxPrefixes = maxMaxPrefixes + 1 }, "peers[0].maxPrefixes", fmt.Sprint(maxMaxPrefixes + 1), ""},
		{"service prefix host bits", func(c *Config) { c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.1/16"}} }, "servicePrefixes[0].cidr", "10.96.0.1/16", "use 10.96.0.0/16"},
		{"service prefix /0", func(c *Config) { c.ServicePrefixes = []ServicePrefix{{CIDR: "::/0"}} }, "servicePrefixes[0].cidr", "::/0", "default route"},
		{"service prefix twice", func(c *Config) {
			c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.0/16"}, {CIDR: "10.96.0.0/16"}}
		}, "servicePrefixes[1].cidr", "10.96.0.0/16", "servicePrefixes[0]"},
		{"service prefix in a pod pool", func(c *Config) { c.ServicePrefixes = []ServicePrefix{{CIDR: "10.244.200.0/24"}} }, "servicePrefixes[0].cidr", "10.244.200.0/24", "10.244.0.0/16"},
		{"service prefix community", func(c *Config) {
			c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.0/16", Communities: []string{"64512:100", "65536:1"}}}
		}, "servicePrefixes[0].communities[1]", "65536:1", "0..65535"},
		{"service prefix large community", func(c *Config) {
			c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.0/16", LargeCommunities: []string{"64512:100"}}}
		}, "servicePrefixes[0].largeCommunities[0]", "64512:100", "global:local1:local2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted it")
			}
			msg := err.Error()
			if want := fmt.Sprintf("%s: invalid value %q", tt.field, tt.value); !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
			if tt.also != "" && !strings.Contains(msg, tt.also) {
				t.Errorf("error %q does not mention %q", msg, tt.also)
			}
			// One mistake, one error: anything else would be noise that
			// hides the real problem.
			for _, fe := range FieldErrors(err) {
				if fe.Field != tt.field {
					t.Errorf("unexpected extra error: %v", fe)
				}
			}
			if strings.Contains(msg, long) {
				t.Errorf("error repeats the password: %q", msg)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"4-byte ASN below AS_TRANS+1", func(c *Config) { c.ASN = 23457 }},
		{"2-byte ASN", func(c *Config) { c.ASN = 65001 }},
		{"largest ASN", func(c *Config) { c.ASN = 4294967294 }},
		{"protocol just after dhcp", func(c *Config) { c.RouteProtocol = 5 }},
		{"protocol after FRR", func(c *Config) { c.RouteProtocol = 199 }},
		{"protocol 255", func(c *Config) { c.RouteProtocol = 255 }},
		{"table 1", func(c *Config) { c.RouteTable = 1 }},
		{"table max", func(c *Config) { c.RouteTable = 4294967295 }},
		{"not listening", func(c *Config) { c.ListenPort = ptr(int32(0)) }},
		{"IPv6-only", func(c *Config) {
			c.PodCIDRs, c.PodPools = c.PodCIDRs[1:], c.PodPools[1:]
		}},
		{"no peers", func(c *Config) { c.Peers = nil }},
		{"gobgp API off", func(c *Config) { c.GoBGPAPI = GoBGPAPIOff }},
		{"gobgp API on ::1", func(c *Config) { c.GoBGPAPI = "[::1]:50051" }},
		{"gobgp API on 127.0.0.2", func(c *Config) { c.GoBGPAPI = "127.0.0.2:50051" }},
		{"metrics on all addresses", func(c *Config) { c.MetricsAddress = ":9254" }},
		{"hold 3s keepalive 1s", func(c *Config) {
			c.Peers[0].HoldTime, c.Peers[0].KeepaliveInterval = dur(3*time.Second), dur(time.Second)
		}},
		{"password of 80 bytes", func(c *Config) { c.Peers[0].Password = strings.Repeat("p", maxPasswordBytes) }},
		{"restart time 4095s", func(c *Config) { c.GracefulRestart.RestartTime = dur(4095 * time.Second) }},
		{"peer in another node's pod CIDR", func(c *Config) { c.Peers[0].Address = "10.244.2.7" }},
		{"CNI 0.3.1", func(c *Config) { c.CNIVersion = "0.3.1" }},
		{"CNI 0.4.0", func(c *Config) { c.CNIVersion = "0.4.0" }},
		{"CNI 1.1.0", func(c *Config) { c.CNIVersion = "1.1.0" }},
		{"CNI chain empty", func(c *Config) { c.CNIChain = []string{} }},
		{"CNI chain reordered", func(c *Config) { c.CNIChain = []string{"bandwidth", "portmap"} }},
		// With nodeAddresses given, the router ID is only an identifier.
		{"peer is the router ID, which is not a node address", func(c *Config) {
			c.NodeAddresses, c.ListenAddresses = []string{"192.0.2.99"}, nil
			c.Peers[0].Address = c.RouterID
		}},
		{"peer with an IPv6 unique local address", func(c *Config) { c.Peers[1].Address = "fd00::1" }},
		{"service prefixes with communities", func(c *Config) {
			c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.0/16", Communities: []string{"64512:100"}, LargeCommunities: []string{"64512:1:100"}}, {CIDR: "fd00:10:96::/112"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate rejected it: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.ASN = 0
	c.Peers[1].Address = "not-an-ip"
	c.LogLevel = "loud"
	err := c.Validate()
	got := map[string]bool{}
	for _, fe := range FieldErrors(err) {
		got[fe.Field] = true
	}
	for _, want := range []string{"asn", "peers[1].address", "logLevel"} {
		if !got[want] {
			t.Errorf("%s not reported; got %v", want, err)
		}
		if err != nil && !strings.Contains(err.Error(), want+": ") {
			t.Errorf("message %q does not name %s", err, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("got errors for %v, want exactly the three broken fields", got)
	}
}

func TestApplyDefaults(t *testing.T) {
	c := &Config{Peers: []Peer{{}, {HoldTime: dur(10 * time.Second)}}}
	c.ApplyDefaults()

	if c.Port() != DefaultListenPort || c.ListenPort == nil {
		t.Errorf("listen port %v, want %d filled in", c.ListenPort, DefaultListenPort)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"routeProtocol", c.RouteProtocol, DefaultRouteProtocol},
		{"routeTable", c.RouteTable, DefaultRouteTable},
		{"resyncInterval", c.ResyncInterval.Duration, DefaultResyncInterval},
		{"maxPrefixHoldTime", c.MaxPrefixHoldTime.Duration, DefaultMaxPrefixHoldTime},
		{"grpcSocket", c.GRPCSocket, DefaultGRPCSocket},
		{"gobgpAPI", c.GoBGPAPI, DefaultGoBGPAPI},
		{"logLevel", c.LogLevel, DefaultLogLevel},
		{"cniVersion", c.CNIVersion, "1.0.0"},
		{"cniChain", strings.Join(c.CNIChain, ","), "portmap,bandwidth"},
		{"gracefulRestart.enabled", c.GracefulRestart.IsEnabled(), true},
		{"gracefulRestart.restartTime", c.GracefulRestart.RestartTime.Duration, DefaultRestartTime},
		{"gracefulRestart.staleRouteTimeout", c.GracefulRestart.StaleRouteTimeout.Duration, c.GracefulRestart.RestartTime.Duration},
		{"peers[0].port", c.Peers[0].Port, DefaultPeerPort},
		{"peers[0].holdTime", c.Peers[0].HoldTime.Duration, DefaultHoldTime},
		{"peers[0].keepaliveInterval", c.Peers[0].KeepaliveInterval.Duration, DefaultHoldTime / 3},
		{"peers[0].connectRetry", c.Peers[0].ConnectRetry.Duration, DefaultConnectRetry},
		{"peers[0].maxPrefixes", c.Peers[0].MaxPrefixes, DefaultMaxPrefixes},
		// A third of 10s is not whole seconds; BGP wants whole seconds.
		{"peers[1].keepaliveInterval", c.Peers[1].KeepaliveInterval.Duration, 3 * time.Second},
		{"peers[0].gracefulRestart follows global", c.Peers[0].GREnabled(c.GracefulRestart.IsEnabled()), c.GracefulRestart.IsEnabled()},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	again := *c
	again.Peers = slices.Clone(c.Peers)
	again.ApplyDefaults()
	if !reflect.DeepEqual(&again, c) {
		t.Errorf("ApplyDefaults is not idempotent:\n%+v\n%+v", again, *c)
	}
}

func TestApplyDefaultsKeepsExplicitValues(t *testing.T) {
	c := &Config{
		ListenPort:      ptr(int32(0)),
		GracefulRestart: GracefulRestart{Enabled: ptr(false), RestartTime: dur(60 * time.Second)},
		Peers:           []Peer{{HoldTime: dur(9 * time.Second), GracefulRestart: ptr(true)}},
	}
	c.ApplyDefaults()
	if c.Port() != 0 {
		t.Errorf("explicit listenPort 0 became %d", c.Port())
	}
	if c.GracefulRestart.IsEnabled() {
		t.Errorf("explicit gracefulRestart.enabled false became true")
	}
	if got := c.GracefulRestart.StaleRouteTimeout.Duration; got != 60*time.Second {
		t.Errorf("staleRouteTimeout %v, want the configured restartTime 60s", got)
	}
	if got := c.Peers[0].KeepaliveInterval.Duration; got != 3*time.Second {
		t.Errorf("keepalive %v, want a third of the 9s hold time", got)
	}
	if !c.Peers[0].GREnabled(c.GracefulRestart.IsEnabled()) {
		t.Errorf("peer gracefulRestart true lost to the global false")
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml, field, also string
	}{
		{"top level", "nodeName: a\nbogusKey: 1\n", "bogusKey", "unknown key"},
		{"in a peer", "peers:\n- address: 192.0.2.1\n  adress: 192.0.2.2\n", "peers[0].adress", "unknown key"},
		{"empty key at the top", "\"\": 1\nnodeName: a\n", "(top level)", "an empty key"},
		{"empty key in a peer", "peers:\n- \"\": 1\n", "peers[0]", "an empty key"},
		{"wrong case", "routerId: 192.0.2.1\n", "routerId", `did you mean "routerID"`},
		{"nested wrong case", "gracefulRestart:\n  restarttime: 9s\n", "gracefulRestart.restarttime", `"restartTime"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.also) {
				t.Errorf("error %q does not name %s with %q", err, tt.field, tt.also)
			}
		})
	}
}

func TestParseRejectsMistypedValues(t *testing.T) {
	tests := []struct {
		name, yaml, field, hidden string
	}{
		{"duration without unit", "peers:\n- holdTime: 90\n", "peers[0].holdTime", ""},
		{"duration with bad unit", "resyncInterval: 30x\n", "resyncInterval", ""},
		// Unquoted, YAML 1.1 reads 012345 as octal 5349; the password
		// would be silently wrong.
		{"unquoted numeric password", "peers:\n- password: 012345\n", "peers[0].password", "5349"},
		{"unquoted numeric node name", "nodeName: 1234\n", "nodeName", ""},
		{"boolean description", "peers:\n- description: yes\n", "peers[0].description", ""},
		{"node name YAML 1.1 reads as false", "nodeName: n\n", "nodeName", ""},
		{"ASN too large for 32 bits", "asn: 4294967296\n", "asn", ""},
		{"TTL too large for a byte", "peers:\n- multihopTTL: 256\n", "multihopTTL", ""},
		{"duplicate key", "asn: 1\nasn: 2\n", "asn", ""},
		{"not a mapping", "- nodeName: a\n", "top level", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			if tt.hidden != "" && strings.Contains(err.Error(), tt.hidden) {
				t.Errorf("error %q shows the secret value", err)
			}
		})
	}
}

func TestMarshalParseRoundTrip(t *testing.T) {
	full := validConfig()
	full.ImportDefaultRoute = true
	full.Transit = true
	full.MetricsAddress = "127.0.0.1:9254"
	full.GracefulRestart.Enabled = ptr(false)
	full.Peers[0].Description = "tor-a"
	full.Peers[0].LocalAddress = "192.0.2.11"
	full.Peers[0].Passive = true
	full.Peers[0].MultihopTTL = 2
	full.Peers[0].Password = "0123 not a number"
	full.Peers[1].GracefulRestart = ptr(true)
	full.Peers[1].HoldTime, full.Peers[1].KeepaliveInterval = dur(9*time.Second), dur(3*time.Second)

	fromExample, err := Load("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	notListening := validConfig()
	notListening.ListenPort = ptr(int32(0))

	for name, c := range map[string]*Config{"full": full, "example": fromExample, "listenPort 0": notListening} {
		t.Run(name, func(t *testing.T) {
			data, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse(Marshal(c)): %v\n%s", err, data)
			}
			if !reflect.DeepEqual(withoutReadNotes(back), withoutReadNotes(c)) {
				t.Errorf("round trip changed the config:\nwant %+v\ngot  %+v\nyaml:\n%s", c, back, data)
			}
		})
	}
}

// The lab writes files from partly filled structs; unset durations must
// stay out of the file (so defaults apply) instead of appearing as "0s".
func TestMarshalLeavesOutUnsetDurations(t *testing.T) {
	c := &Config{NodeName: "n", Peers: []Peer{{Address: "192.0.2.1", ASN: 65001}}}
	data, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"holdTime", "keepaliveInterval", "connectRetry", "resyncInterval", "restartTime", "listenPort", "0s"} {
		if strings.Contains(string(data), key) {
			t.Errorf("marshalled config contains %q:\n%s", key, data)
		}
	}
	back, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withoutReadNotes(back), c) {
		t.Errorf("decode(Marshal(c)) = %+v, want %+v", back, c)
	}
}

func TestOverride(t *testing.T) {
	file := &Config{
		NodeName:   "from-file",
		RouterID:   "192.0.2.1",
		ASN:        65001,
		PodCIDRs:   []string{"10.244.1.0/24"},
		GRPCSocket: "/run/file.sock",
		LogLevel:   "warn",
	}

	c := *file
	c.Override(Overrides{})
	if !reflect.DeepEqual(&c, file) {
		t.Errorf("empty overrides changed the config: %+v", c)
	}

	flags := Overrides{
		NodeName:   "from-flag",
		RouterID:   "192.0.2.2",
		ASN:        65002,
		PodCIDRs:   []string{"10.244.2.0/24", "fd00:10:244:2::/64"},
		GRPCSocket: "/run/flag.sock",
		LogLevel:   "debug",
	}
	c = *file
	c.Override(flags)
	want := Config{
		NodeName:   flags.NodeName,
		RouterID:   flags.RouterID,
		ASN:        flags.ASN,
		PodCIDRs:   flags.PodCIDRs,
		GRPCSocket: flags.GRPCSocket,
		LogLevel:   flags.LogLevel,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Override = %+v, want %+v", c, want)
	}
	flags.PodCIDRs[0] = "changed-later"
	if c.PodCIDRs[0] == "changed-later" {
		t.Errorf("config shares the PodCIDRs slice with the overrides")
	}

	// Only the ASN given: everything else stays from the file.
	c = *file
	c.Override(Overrides{ASN: 65003})
	if c.ASN != 65003 || c.NodeName != file.NodeName || c.LogLevel != file.LogLevel {
		t.Errorf("partial override = %+v", c)
	}
}

func TestAccessors(t *testing.T) {
	c := validConfig()
	c.Peers[1].LocalAddress = "2001:db8:0:1::11"

	for i, p := range c.PodCIDRPrefixes() {
		if p.String() != c.PodCIDRs[i] {
			t.Errorf("PodCIDRPrefixes()[%d] = %v, want %s", i, p, c.PodCIDRs[i])
		}
	}
	if got := c.PodPoolPrefixes(); len(got) != len(c.PodPools) {
		t.Errorf("PodPoolPrefixes() = %v for %v", got, c.PodPools)
	}
	if got := c.NodeAddrs(); len(got) != len(c.NodeAddresses) || got[1] != netip.MustParseAddr(c.NodeAddresses[1]) {
		t.Errorf("NodeAddrs() = %v for %v", got, c.NodeAddresses)
	}
	if got := c.RouterIDAddr(); got.String() != c.RouterID {
		t.Errorf("RouterIDAddr() = %v", got)
	}
	if got := c.Peers[1].Addr(); got != netip.MustParseAddr("2001:db8:0:1::1") {
		t.Errorf("Addr() = %v", got)
	}
	if got := c.Peers[0].LocalAddr(); got.IsValid() {
		t.Errorf("LocalAddr() without localAddress = %v, want the zero Addr", got)
	}
	if got := c.Peers[1].LocalAddr(); got.String() != c.Peers[1].LocalAddress {
		t.Errorf("LocalAddr() = %v", got)
	}

	c.ServicePrefixes = []ServicePrefix{{CIDR: "10.96.0.0/16", Communities: []string{"64512:100"}, LargeCommunities: []string{"64512:1:100"}}}
	if got := c.ServicePrefixValues(); len(got) != 1 || got[0].Prefix != netip.MustParsePrefix("10.96.0.0/16") ||
		!slices.Equal(got[0].Communities, []uint32{64512<<16 | 100}) || !slices.Equal(got[0].LargeCommunities, [][3]uint32{{64512, 1, 100}}) {
		t.Errorf("ServicePrefixValues() = %+v", got)
	}

	if (&Config{}).Port() != DefaultListenPort {
		t.Errorf("Port() with listenPort absent is not the default")
	}
	if !(GracefulRestart{}).IsEnabled() {
		t.Errorf("graceful restart is off when not configured")
	}
	for _, global := range []bool{false, true} {
		if (Peer{}).GREnabled(global) != global {
			t.Errorf("peer without gracefulRestart does not follow global %v", global)
		}
		if (Peer{GracefulRestart: ptr(!global)}).GREnabled(global) == global {
			t.Errorf("peer gracefulRestart %v lost to global %v", !global, global)
		}
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("nodeName: node-a\nasn: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mistyped := filepath.Join(dir, "mistyped.yaml")
	if err := os.WriteFile(mistyped, []byte("nodeName: node-a\nfoo: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, mistyped, filepath.Join(dir, "missing.yaml")} {
		_, err := Load(path)
		if err == nil {
			t.Errorf("Load(%s) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Load(%s) error %q does not name the file", path, err)
		}
	}
	// Read parses but does not validate: the daemon still has to apply
	// overrides.
	if _, err := Read(bad); err != nil {
		t.Errorf("Read validated: %v", err)
	}
}

// REFERENCE.md is the operator's documentation; it must not fall behind
// the types.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for name, ft := range jsonFields(t) {
			key := prefix + name
			keys = append(keys, key)
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType:
				walk(key+".", ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(key+"[].", ft.Elem())
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	for _, key := range keys {
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("REFERENCE.md does not document `%s`", key)
		}
	}
	if !strings.Contains(string(doc), allowedProtocols()) {
		t.Errorf("REFERENCE.md does not list the allowed route protocols %s", allowedProtocols())
	}
}
