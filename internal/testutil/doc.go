// Package testutil holds the small helpers that tests in several packages
// need and would otherwise copy: polling a condition until it holds, and
// checking that a path the test may create exists afterwards only if it did
// before.
//
// It exists because routes, the lab's packages under testbed and the
// Kubernetes harness each had their own copy of the same polling loop
// (eventually, waitFor), drifting apart in interval and wording. It is
// ordinary (non-test) code so that any package's tests can import it; only
// tests may import it.
//
// What it must not touch: anything outside the test calling it. It knows
// nothing about namespaces, FRR, BGP or Kubernetes (testbed/testenv holds the
// lab-specific test helpers) and imports only the standard library.
package testutil
