// Package bgpcapture records the BGP sessions of a lab namespace on the wire
// and decodes the messages, so that a test can check what podrouted really
// sent (the graceful-restart flags of its OPENs, say) rather than what it
// logged.
//
// It captures with tcpdump (Debian's package, as the lab's other tools) into
// a pcap file in a directory the caller owns, reads the file back with
// gopacket's pcapgo, reassembles each TCP direction into its byte stream
// and cuts that into BGP messages, which GoBGP's packet parser decodes.
//
// It must not touch anything outside the namespace it is given, and it
// stops only the tcpdump it started.
package bgpcapture
