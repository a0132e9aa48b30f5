// Package bgppeer is a scriptable raw BGP speaker for tests: it dials (or
// accepts) a TCP connection to the speaker under test, optionally from a
// given local address and with TCP MD5 (RFC 2385), exchanges OPEN and
// KEEPALIVE (4-byte AS, multiprotocol IPv4/IPv6 unicast, optionally
// graceful restart and extended messages), keeps the session alive, and
// then lets the caller send whatever bytes it likes: well-formed UPDATEs
// built here (IPv4 NLRI and withdrawals, MP_REACH_NLRI and MP_UNREACH_NLRI
// for IPv6), hand-built malformed messages, or mutations of valid ones
// (Mutate). It records everything the other side sends, in particular
// NOTIFICATIONs (code and subcode), and when the connection closed.
//
// It exists because no real router (FRR, BIRD) can be told to send a
// message type 9, a 3-byte MP_REACH_NLRI or ten thousand UPDATEs after a
// NOTIFICATION, and those are what a hostile or broken peer sends.
//
// Messages are encoded here byte by byte (so that a test can break any
// field it likes); the unit tests check the encoder against GoBGP's
// parser. What the peer receives is decoded with GoBGP's parser.
//
// It is plain (non-test) code so that tests in several packages can use
// it; it must not import the testing package. It knows nothing about
// namespaces: a caller that wants the socket in a network namespace dials
// from inside it (netns.Namespace.Do); the socket stays there.
//
// What it must not touch: anything but the sockets it opens.
package bgppeer
