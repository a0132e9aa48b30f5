package bgpcapture

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// segment is one TCP segment of a test stream.
type segment struct {
	syn     bool
	seq     uint32
	payload []byte
}

// pcapOf writes segments from 172.31.1.2:40000 to 172.31.1.1:179 as
// Linux-cooked frames, as tcpdump -i any -y LINUX_SLL does.
func pcapOf(t *testing.T, segs []segment) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeLinuxSLL); err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("172.31.1.2").To4(), DstIP: net.ParseIP("172.31.1.1").To4()}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 179, Seq: s.seq, SYN: s.syn, ACK: !s.syn, Window: 1000}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		out := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(out, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, tcp, gopacket.Payload(s.payload)); err != nil {
			t.Fatal(err)
		}
		// The Linux cooked header (gopacket cannot write one): packet
		// type 4 (outgoing), ARPHRD_ETHER, a 6-byte address, IPv4.
		frame := append([]byte{0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, out.Bytes()...)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1000+int64(i), 0), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

func TestReadReassemblesAndDecodesOpens(t *testing.T) {
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapGracefulRestart(true, false, 120, []*bgp.CapGracefulRestartTuple{
			bgp.NewCapGracefulRestartTuple(bgp.RF_IPv4_UC, true),
		}),
	}
	openMsg, err := bgp.NewBGPOpenMessage(65001, 3, netip4("172.31.1.2"), []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	open, err := openMsg.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	keepalive, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	stream := append(append([]byte{}, open...), keepalive...)
	const isn = 1000
	// The OPEN split over two segments, the second sent twice (a
	// retransmission), then the KEEPALIVE.
	cut := 10
	segs := []segment{
		{syn: true, seq: isn},
		{seq: isn + 1, payload: stream[:cut]},
		{seq: isn + 1 + uint32(cut), payload: stream[cut:len(open)]},
		{seq: isn + 1 + uint32(cut), payload: stream[cut:len(open)]},
		{seq: isn + 1 + uint32(len(open)), payload: keepalive},
	}
	msgs, err := Read(pcapOf(t, segs))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Type != bgp.BGP_MSG_OPEN || msgs[1].Type != bgp.BGP_MSG_KEEPALIVE {
		t.Fatalf("messages = %+v, want an OPEN and a KEEPALIVE", msgs)
	}
	if msgs[0].Src.String() != "172.31.1.2:40000" || msgs[0].Dst.Port() != 179 {
		t.Errorf("OPEN from %s to %s", msgs[0].Src, msgs[0].Dst)
	}
	gr, err := OpenGracefulRestart(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !gr.Present || !gr.Restarting || gr.Time != 120 || !gr.Forwarding["ipv4-unicast"] || len(gr.Forwarding) != 1 {
		t.Errorf("graceful restart = %+v, want R set, 120 s, F set for ipv4-unicast only", gr)
	}
	if _, err := OpenGracefulRestart(msgs[1]); err == nil {
		t.Error("OpenGracefulRestart of a KEEPALIVE: want an error")
	}
}

// A capture that lost a segment resynchronises at the next message.
func TestReadSkipsAGap(t *testing.T) {
	ka, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	segs := []segment{
		{syn: true, seq: 0},
		{seq: 1, payload: ka[:5]}, // the rest of this KEEPALIVE is lost
		{seq: 1 + uint32(len(ka)), payload: ka},
	}
	msgs, err := Read(pcapOf(t, segs))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Type != bgp.BGP_MSG_KEEPALIVE {
		t.Errorf("messages = %+v, want the one whole KEEPALIVE", msgs)
	}
}

func netip4(s string) netip.Addr { return netip.MustParseAddr(s) }
