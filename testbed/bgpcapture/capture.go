package bgpcapture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/podroute/podroute/testbed/netns"
)

// Capture is a running tcpdump of BGP (TCP port 179) in one namespace.
type Capture struct {
	proc *netns.Process
	file string
}

// Start captures BGP on every interface of ns into dir/name.pcap. tcpdump
// writes each packet as it comes (-U), in Linux cooked format (-y
// LINUX_SLL) so that one capture covers all interfaces.
func Start(ns *netns.Namespace, dir, name string) (*Capture, error) {
	file := filepath.Join(dir, name+".pcap")
	p, err := netns.StartProcess(ns, "tcpdump-"+name, filepath.Join(dir, name+".tcpdump.log"),
		"tcpdump", "-i", "any", "-y", "LINUX_SLL", "-U", "-n", "-s", "0", "-w", file, "tcp port 179")
	if err != nil {
		return nil, fmt.Errorf("start tcpdump in %s: %w", ns.Name, err)
	}
	c := &Capture{proc: p, file: file}
	// tcpdump creates the file once it listens; packets before that would
	// be lost, so wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(file); err == nil && fi.Size() > 0 {
			return c, nil
		}
		if p.Exited() || time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("tcpdump in %s did not start capturing", ns.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends tcpdump (it flushes on SIGTERM). Calling it twice is fine.
func (c *Capture) Stop() error {
	if c.proc.Exited() {
		return nil
	}
	return c.proc.Stop(syscall.SIGTERM, 5*time.Second)
}

// File is the pcap file, for keeping it next to a failed test's logs.
func (c *Capture) File() string { return c.file }

// Message is one BGP message as seen on the wire.
type Message struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	Type     uint8
	// Raw is the whole message, header included.
	Raw []byte
}

// Decode parses the message with GoBGP's parser.
func (m Message) Decode() (*bgp.BGPMessage, error) {
	return bgp.ParseBGPMessage(m.Raw)
}

// Messages stops the capture and returns every BGP message in it, in
// capture order. A direction whose stream has a gap (a lost segment) is
// resynchronised at the next segment that starts a message.
func (c *Capture) Messages() ([]Message, error) {
	if err := c.Stop(); err != nil {
		return nil, err
	}
	f, err := os.Open(c.file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f)
}

// flow is one direction of one TCP connection.
type flow struct {
	src, dst netip.AddrPort
}

type stream struct {
	next uint32
	buf  []byte
	live bool
}

var marker = bytes.Repeat([]byte{0xff}, 16)

// Read decodes a pcap of BGP traffic (Linux cooked or Ethernet frames).
func Read(r io.Reader) ([]Message, error) {
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read pcap: %w", err)
	}
	var first gopacket.Decoder
	switch pr.LinkType() {
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeEthernet:
		first = layers.LayerTypeEthernet
	default:
		return nil, fmt.Errorf("pcap link type %v not supported", pr.LinkType())
	}
	streams := map[flow]*stream{}
	var out []Message
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break // tcpdump killed mid-write leaves a torn last record
		}
		if err != nil {
			return out, fmt.Errorf("read pcap: %w", err)
		}
		pkt := gopacket.NewPacket(data, first, gopacket.NoCopy)
		tcpL, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcpL == nil {
			continue
		}
		var src, dst netip.Addr
		switch ip := pkt.NetworkLayer().(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
		default:
			continue
		}
		fl := flow{netip.AddrPortFrom(src, uint16(tcpL.SrcPort)), netip.AddrPortFrom(dst, uint16(tcpL.DstPort))}
		s := streams[fl]
		if s == nil {
			s = &stream{}
			streams[fl] = s
		}
		if tcpL.SYN {
			*s = stream{next: tcpL.Seq + 1, live: true}
			continue
		}
		payload := tcpL.Payload
		if len(payload) == 0 {
			continue
		}
		if !s.live {
			// Joined mid-connection: take this segment as the start.
			*s = stream{next: tcpL.Seq, live: true}
		}
		switch d := int32(tcpL.Seq - s.next); {
		case d > 0: // a gap: start over at this segment
			s.buf, s.next = s.buf[:0], tcpL.Seq
		case d < 0:
			if -int(d) >= len(payload) {
				continue // retransmission
			}
			payload = payload[-d:]
		}
		s.next += uint32(len(payload))
		s.buf = append(s.buf, payload...)
		for len(s.buf) >= 19 {
			if !bytes.Equal(s.buf[:16], marker) {
				// Not at a message boundary (after a gap): look for one.
				i := bytes.Index(s.buf[1:], marker)
				if i < 0 {
					s.buf = s.buf[:0]
					break
				}
				s.buf = s.buf[1+i:]
				continue
			}
			l := int(binary.BigEndian.Uint16(s.buf[16:18]))
			if l < 19 {
				s.buf = s.buf[16:]
				continue
			}
			if len(s.buf) < l {
				break
			}
			out = append(out, Message{Time: ci.Timestamp, Src: fl.src, Dst: fl.dst, Type: s.buf[18], Raw: append([]byte(nil), s.buf[:l]...)})
			s.buf = s.buf[l:]
		}
		s.buf = append([]byte(nil), s.buf...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// GracefulRestart is what an OPEN says about graceful restart (RFC 4724).
type GracefulRestart struct {
	// Present: the capability was in the OPEN.
	Present bool
	// Restarting is the R bit: the sender has restarted.
	Restarting bool
	// Time is the restart time in seconds.
	Time uint16
	// Forwarding maps each family in the capability to its F bit: the
	// sender kept its forwarding state for that family.
	Forwarding map[string]bool
}

// OpenGracefulRestart reads the graceful-restart capability of an OPEN.
func OpenGracefulRestart(m Message) (GracefulRestart, error) {
	if m.Type != bgp.BGP_MSG_OPEN {
		return GracefulRestart{}, fmt.Errorf("message type %d is not an OPEN", m.Type)
	}
	msg, err := m.Decode()
	if err != nil {
		return GracefulRestart{}, err
	}
	open, ok := msg.Body.(*bgp.BGPOpen)
	if !ok {
		return GracefulRestart{}, fmt.Errorf("OPEN body is %T", msg.Body)
	}
	var gr GracefulRestart
	for _, p := range open.OptParams {
		pc, ok := p.(*bgp.OptionParameterCapability)
		if !ok {
			continue
		}
		for _, c := range pc.Capability {
			g, ok := c.(*bgp.CapGracefulRestart)
			if !ok {
				continue
			}
			gr.Present = true
			gr.Restarting = g.Flags&0x08 != 0
			gr.Time = g.Time
			gr.Forwarding = map[string]bool{}
			for _, t := range g.Tuples {
				gr.Forwarding[bgp.NewFamily(t.AFI, t.SAFI).String()] = t.Flags&0x80 != 0
			}
		}
	}
	return gr, nil
}
