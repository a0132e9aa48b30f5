// Package testenv helps tests that build parts of the lab by hand: it skips
// them on machines that cannot run the lab (no root, no FRR, no BIRD), and
// gives them namespaces, FRR and BIRD routers and a Cleanup stack that are
// torn down when the test ends, whichever way it ends. Like
// net/http/httptest it is ordinary code for tests to import; only tests
// may import it.
//
// It exists so that the tests of netns, frr, bird, e2e and bgpbench share
// one copy of these helpers. Generic helpers that know nothing of the lab
// (polling, ...) live in internal/testutil.
//
// What it must not touch: anything a test did not ask for. Everything it
// creates is registered with the test's Cleanup, inside namespaces the test
// named (with a run ID).
package testenv
