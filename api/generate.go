package api

// The generated files are committed so that building podroute needs neither
// protoc nor its plugins; regenerate only after editing podroute.proto.

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative podroute.proto
