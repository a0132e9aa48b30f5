// Package api is podrouted's status API: the gRPC service defined in
// podroute.proto, the Go code generated from it, and the helpers that serve
// and reach it over a local unix socket (Listen, Dial).
//
// The API is read-only. It reports what the daemon is doing (node, peers,
// originated prefixes, kernel routes) for the podroute CLI; it must not grow
// calls that change state, and this package must not import the daemon's own
// packages (bgp, routes, cluster): the daemon fills the messages, not the
// other way round.
//
// The generated files podroute.pb.go and podroute_grpc.pb.go are committed.
// After editing podroute.proto, regenerate them from the module root with
//
//	PATH=$PATH:$(go env GOPATH)/bin go generate ./api
//
// which needs protoc, protoc-gen-go and protoc-gen-go-grpc (the versions in
// the generated files' headers).
package api
