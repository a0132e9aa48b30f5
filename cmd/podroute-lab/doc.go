// Command podroute-lab builds the podroute lab, a small data centre of
// Linux network namespaces on one machine: FRR routers, nodes running
// podrouted and pods, with reachability shown. It is thin: the lab itself
// lives in package testbed/lab, its topologies in testbed/topology.
// `podroute-lab up --kubernetes` adds a real control plane (k8sharness, in
// a namespace on the first LAN) and runs podrouted in Kubernetes mode
// against it. `podroute-lab clab` writes the same topologies as
// containerlab files (testbed/containerlab) for people with Docker.
package main
