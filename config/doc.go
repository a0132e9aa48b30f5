// Package config owns the podrouted configuration file: its Go types (which
// are also its YAML schema), the defaults, and the validation that turns a
// bad file into a list of errors naming each field, its value and what is
// allowed.
//
// It is a top-level folder rather than part of cmd/podrouted because two
// programs share it: the daemon reads configuration files with Load, and the
// lab generator (cmd/podroute-lab, testbed) writes them from these same types
// with sigs.k8s.io/yaml. Keeping one definition means the files the lab
// writes are exactly the files the daemon accepts.
//
// The package knows nothing about BGP libraries, netlink or Kubernetes
// clients: it checks values against the rules of the protocols and the
// kernel (ASN ranges, RFC 4724 restart time, route protocol numbers that
// other routing daemons own) and hands the daemon typed values (netip.Prefix,
// netip.Addr, time.Duration) so that no other package re-parses strings.
// Where another package owns a rule, config asks it rather than keep a copy:
// the reserved route protocol numbers come from routes.ReservedProtocols,
// the CNI versions podroute-cni speaks and the plugins it can chain from
// package cni.
//
// The daemon's order is Read, Override (command-line flags win over the
// file), ApplyDefaults, Validate; Load does the same without overrides.
package config
