// Package topology is the lab's model: a Topology says which routers,
// nodes, links and LANs a lab has (built-in ones, or YAML files written by
// hand), and NewPlan resolves it into pure data: every interface and
// address, every FRR configuration, every podrouted configuration and pod.
// The namespace lab (testbed/lab) and the containerlab generator
// (testbed/containerlab) both build from the same Plan, so they never drift
// apart.
//
// What it must not touch: anything outside memory. It creates no namespace,
// starts no process and writes no file (Load reads the topology file it is
// given); turning a Plan into a running lab is testbed/lab's job.
package topology
