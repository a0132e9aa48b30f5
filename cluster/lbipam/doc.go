// Package lbipam is podroute's Service controller: it hands out
// LoadBalancer addresses from the pools in BGPConfiguration (writing them to
// status.loadBalancer.ingress) and reports bad Service input (annotations,
// requests it cannot meet, exhausted pools) as Events on the Service.
//
// Where it runs, and why: inside podrouted, in exactly one instance at a
// time, elected with a client-go Lease (podroute-service-controller in
// podrouted's namespace). Inside podrouted, because a second component
// would be one more Deployment, image, ServiceAccount and upgrade to keep
// in step for what is a small loop over objects podrouted already watches
// (it shares the node's stripped Service informer, cluster.Watcher.Services).
// One instance, because allocation needs one view of which address is
// whose: two allocators could each find the same address free. Only the
// leader writes; every node still advertises from its own view, so a
// leader change never touches routing. Instances campaign only while
// BGPConfiguration has service ranges or pools, so a cluster without them
// pays no Lease traffic; on a clean stop the leader releases the Lease and
// another node takes over within a retry period.
//
// The API server is the only store. Plan derives every allocation from
// what Services' statuses hold, oldest Service first, then fills what is
// missing; nothing is kept on disk or only in memory, so a restart of the
// leader, of podrouted or of every node loses nothing and hands out
// nothing twice. Two guards cover what a cache cannot: every status write
// carries the resourceVersion the decision was made from (a Service that
// changed meanwhile is a Conflict, decided again on the next pass), and a
// new leader first reads all Services with a consistent list, pinning any
// its informer has not caught up with, as it pins its own writes until the
// informer shows them.
//
// The Services it serves carry Kubernetes' load-balancer cleanup
// finalizer (cluster.LoadBalancerCleanupFinalizer), added before their
// first address is written: a deleted Service then stays, its addresses
// still taken, until the leader has seen the deletion and removes the
// finalizer, and so does one changed away from type LoadBalancer. The
// finalizer is managed while pools or service ranges are configured: a
// Service deleted after the last pool was removed waits for its
// finalizer until one is configured again or someone removes it
// (kubectl patch ... --type json -p '[{"op":"remove","path":"/metadata/finalizers/N"}]').
//
// What it must not touch: anything but status.loadBalancer and that one
// finalizer of the Services it serves (type LoadBalancer with podroute's
// loadBalancerClass, or no class when allocateClassless), Events, and its
// Lease. It knows
// nothing about BGP or routes: advertisement is package cluster's.
package lbipam
