package bird

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Line is one line of a birdc reply: the reply code it belongs to and its
// text. Continuation lines carry the code of the line they continue.
type Line struct {
	Code int
	Text string
}

// Reply is what BIRD answered to one command.
type Reply []Line

// Contains reports whether a line of code contains s.
func (rp Reply) Contains(code int, s string) bool {
	for _, l := range rp {
		if l.Code == code && strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}

func (rp Reply) String() string {
	var b strings.Builder
	for _, l := range rp {
		fmt.Fprintf(&b, "%04d %s\n", l.Code, l.Text)
	}
	return strings.TrimRight(b.String(), "\n")
}

// Command runs one birdc command (words joined by spaces, as birdc joins
// its arguments) and returns the reply without the welcome line. A reply
// with an error code (8xxx run-time, 9xxx parse) is an error.
func (r *Router) Command(words ...string) (Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), birdcTimeout)
	defer cancel()
	args := append([]string{"-v", "-s", r.Socket}, words...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, Birdc, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	reply, parseErr := ParseReply(stdout.String())
	cmdline := fmt.Sprintf("birdc -s %s %q", r.Socket, strings.Join(words, " "))
	if parseErr != nil {
		return reply, fmt.Errorf("bird %s: %s: %w", r.Name, cmdline, parseErr)
	}
	for _, l := range reply {
		if l.Code >= 8000 {
			return reply, fmt.Errorf("bird %s: %s: %d %s", r.Name, cmdline, l.Code, l.Text)
		}
	}
	if runErr != nil {
		return reply, fmt.Errorf("bird %s: %s: %w: %s", r.Name, cmdline, runErr,
			strings.TrimSpace(stderr.String()+" "+stdout.String()))
	}
	return reply, nil
}

var codeLine = regexp.MustCompile(`^(\d{4})[- ]`)

// ParseReply parses the output of `birdc -v`: "NNNN-text" and "NNNN text"
// start a line of code NNNN, a line that starts with five spaces continues
// the previous code. The welcome line (0001) is dropped. Anything else
// (birdc's own "???" for a line it could not read) is an error rather than
// silently misread.
func ParseReply(out string) (Reply, error) {
	var reply Reply
	code := -1
	for _, raw := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		switch m := codeLine.FindStringSubmatch(raw); {
		case m != nil:
			code, _ = strconv.Atoi(m[1])
			if code == 1 { // 0001 BIRD x.y.z ready.
				continue
			}
			reply = append(reply, Line{Code: code, Text: raw[5:]})
		case strings.HasPrefix(raw, "     ") && code >= 0:
			reply = append(reply, Line{Code: code, Text: raw[5:]})
		case raw == "" && code < 0:
			// empty output
		default:
			return reply, fmt.Errorf("unexpected birdc output line %q", raw)
		}
	}
	return reply, nil
}

// Protocol is one protocol of `show protocols all`.
type Protocol struct {
	Name, Proto, Table string // "n_172_31_1_2", "BGP", "---"
	State              string // "up", "start", "down", "flush"
	Since              string
	Info               string // "Established", "Active  Socket: Connection closed", ...

	// For BGP protocols.
	BGPState        string // "Established", "Active", "Connect", "OpenSent", "Idle", "Down"...
	NeighborAddress string
	NeighborAS      uint32
	LastError       string // "Socket: Connection closed", "Received: Hold timer expired", ...
	// GracefulRestartActive: the neighbour is restarting gracefully and
	// BIRD keeps its routes (stale) until it is back or the restart
	// timer runs out.
	GracefulRestartActive bool
	// NeighborGRCapability is what the neighbour's OPEN of the current
	// session said about graceful restart; zero while the session is down.
	// A restart test reads the R and F flags of each session here, with
	// no packet capture.
	NeighborGRCapability GRCapability

	Channels map[string]Channel // by family: "ipv4", "ipv6"
	// Details holds every "Key: value" line of the protocol's section;
	// nested lines (the capabilities) are keyed by their path, e.g.
	// "Neighbor capabilities/Graceful restart/Restart time".
	Details map[string]string
	Flags   []string // lines without a value, e.g. "Neighbor graceful restart active"
}

// GRCapability is a graceful-restart capability of a BGP OPEN (RFC 4724).
type GRCapability struct {
	Advertised  bool
	Restarting  bool // the Restart State flag (R): "Restart recovery"
	RestartTime int  // seconds
	// Preserved lists the families whose forwarding state the speaker
	// kept across its restart (their F flag), e.g. ["ipv4"].
	Preserved []string
}

// Channel is one channel of a protocol.
type Channel struct {
	State                                   string // "UP", "START", "DOWN", ...
	Imported, Filtered, Exported, Preferred int
	// NeighborGR is the neighbour's graceful-restart state for this
	// channel while it restarts ("Regular", "Long-lived"...); empty
	// otherwise.
	NeighborGR string
	Details    map[string]string
}

// Protocols returns every protocol by name, from `show protocols all`.
func (r *Router) Protocols() (map[string]Protocol, error) {
	reply, err := r.Command("show", "protocols", "all")
	if err != nil {
		return nil, err
	}
	return ParseProtocols(reply)
}

// ParseProtocols reads a `show protocols all` reply: a 1002 line per
// protocol (the summary row), then its 1006 details.
func ParseProtocols(reply Reply) (map[string]Protocol, error) {
	protos := map[string]Protocol{}
	var cur *Protocol
	var details []string
	flush := func() {
		if cur != nil {
			cur.parseDetails(details)
			protos[cur.Name] = *cur
		}
		cur, details = nil, nil
	}
	for _, l := range reply {
		switch l.Code {
		case 1002:
			flush()
			p, err := parseProtocolRow(l.Text)
			if err != nil {
				return nil, err
			}
			cur = &p
		case 1006:
			if cur == nil {
				return nil, fmt.Errorf("protocol details before any protocol: %q", l.Text)
			}
			details = append(details, l.Text)
		}
	}
	flush()
	return protos, nil
}

var sinceTime = regexp.MustCompile(`^\d{1,2}:\d{2}:\d{2}(\.\d+)?$`)

// parseProtocolRow reads "name proto table state since info". The since
// column is a time of day, a date, or a date and a time, depending on
// BIRD's timeformat; info is the rest of the line.
func parseProtocolRow(row string) (Protocol, error) {
	f := strings.Fields(row)
	if len(f) < 5 {
		return Protocol{}, fmt.Errorf("protocol row %q: want name, protocol, table, state and since", row)
	}
	p := Protocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3], Since: f[4],
		Channels: map[string]Channel{}, Details: map[string]string{}}
	rest := f[5:]
	if len(rest) > 0 && sinceTime.MatchString(rest[0]) {
		p.Since += " " + rest[0]
		rest = rest[1:]
	}
	p.Info = strings.Join(rest, " ")
	return p, nil
}

// parseDetails reads the indented "Key: value" lines of one protocol;
// "Channel ipv4" starts a channel's section. A line is a heading when the
// lines after it are indented deeper.
func (p *Protocol) parseDetails(lines []string) {
	type item struct {
		indent int
		text   string
	}
	var items []item
	for _, l := range lines {
		text := strings.TrimSpace(l)
		if text == "" {
			continue
		}
		items = append(items, item{len(l) - len(strings.TrimLeft(l, " \t")), text})
	}
	var ch *Channel
	chName := ""
	saveChannel := func() {
		if ch != nil {
			p.Channels[chName] = *ch
		}
		ch = nil
	}
	type heading struct {
		indent int
		text   string
	}
	var stack []heading
	for i, it := range items {
		for len(stack) > 0 && stack[len(stack)-1].indent >= it.indent {
			stack = stack[:len(stack)-1]
		}
		if name, ok := strings.CutPrefix(it.text, "Channel "); ok && !strings.Contains(it.text, ":") {
			saveChannel()
			chName = name
			ch = &Channel{Details: map[string]string{}}
			stack = nil
			continue
		}
		isHeading := i+1 < len(items) && items[i+1].indent > it.indent && !strings.Contains(it.text, ":")
		if isHeading {
			stack = append(stack, heading{it.indent, it.text})
			continue
		}
		path := ""
		for _, h := range stack {
			path += h.text + "/"
		}
		key, value, hasValue := strings.Cut(it.text, ":")
		if !hasValue {
			if ch == nil {
				p.Flags = append(p.Flags, path+it.text)
			}
			continue
		}
		key, value = path+strings.TrimSpace(key), strings.TrimSpace(value)
		if ch != nil {
			ch.Details[key] = value
		} else {
			p.Details[key] = value
		}
	}
	saveChannel()

	p.BGPState = p.Details["BGP state"]
	p.NeighborAddress = p.Details["Neighbor address"]
	if asn, err := strconv.ParseUint(p.Details["Neighbor AS"], 10, 32); err == nil {
		p.NeighborAS = uint32(asn)
	}
	p.LastError = p.Details["Last error"]
	const grCap = "Neighbor capabilities/Graceful restart"
	for _, f := range p.Flags {
		switch f {
		case "Neighbor graceful restart active":
			p.GracefulRestartActive = true
		case grCap, grCap + "/Restart recovery":
			p.NeighborGRCapability.Advertised = true
			p.NeighborGRCapability.Restarting = p.NeighborGRCapability.Restarting || f != grCap
		}
	}
	if t, ok := p.Details[grCap+"/Restart time"]; ok {
		p.NeighborGRCapability.Advertised = true
		p.NeighborGRCapability.RestartTime, _ = strconv.Atoi(t)
		p.NeighborGRCapability.Preserved = strings.Fields(p.Details[grCap+"/AF preserved"])
	}
	for name, c := range p.Channels {
		c.State = c.Details["State"]
		c.NeighborGR = c.Details["Neighbor GR"]
		routes := c.Details["Routes"]
		c.Imported = countOf(routes, "imported")
		c.Filtered = countOf(routes, "filtered")
		c.Exported = countOf(routes, "exported")
		c.Preferred = countOf(routes, "preferred")
		p.Channels[name] = c
	}
}

// countOf finds "N what" in s ("2 imported, 0 exported, 2 preferred").
func countOf(s, what string) int {
	m := regexp.MustCompile(`(\d+) ` + what).FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Route is one route of `show route all`.
type Route struct {
	Table    string // "master4", "master6"
	Prefix   string // "10.244.1.0/24"
	Type     string // "unicast", "blackhole", "unreachable", "prohibited"
	Protocol string // the protocol it came from, e.g. "n_172_31_1_2", "static4"
	Since    string // when it last changed
	From     string // the BGP neighbour, when it is not the next hop
	// Primary is BIRD's best route for the prefix (the one the kernel
	// protocol exports); SyncError says the kernel refused it ("!").
	Primary, SyncError bool
	Preference         int
	// LLStale marks a route kept as stale by long-lived graceful restart.
	LLStale  bool
	Info     string // the rest of the line, e.g. "(100) [AS65001i]"
	NextHops []NextHop
	Attrs    map[string]string // "Type", "BGP.as_path", "BGP.next_hop", ...
}

// NextHop is one next hop of a Route.
type NextHop struct {
	Via    string // empty for a device route
	Dev    string
	Weight int // 0 unless listed (multipath)
}

// Routes returns the routes that `show route [filter...] all` lists, e.g.
// Routes() for every table, Routes("table", "master6"), Routes("protocol",
// "n_172_31_1_2"), Routes("for", "10.244.1.10").
func (r *Router) Routes(filter ...string) ([]Route, error) {
	reply, err := r.Command(append(append([]string{"show", "route"}, filter...), "all")...)
	if err != nil {
		return nil, err
	}
	return ParseRoutes(reply)
}

// RIB returns the routes of family "ipv4" (table master4) or "ipv6"
// (master6) by prefix, every route of a prefix, best (Primary) first.
func (r *Router) RIB(family string) (map[string][]Route, error) {
	table := map[string]string{"ipv4": "master4", "ipv6": "master6"}[family]
	if table == "" {
		return nil, fmt.Errorf("address family %q: want ipv4 or ipv6", family)
	}
	routes, err := r.Routes("table", table)
	if err != nil {
		return nil, err
	}
	rib := map[string][]Route{}
	for _, rt := range routes {
		if rt.Primary {
			rib[rt.Prefix] = append([]Route{rt}, rib[rt.Prefix]...)
		} else {
			rib[rt.Prefix] = append(rib[rt.Prefix], rt)
		}
	}
	return rib, nil
}

// routeLine is "PREFIX TYPE [PROTO SINCE[ from ADDR]][ *| !] INFO"; PREFIX
// is blank for the further routes of the same prefix.
var (
	routeLine  = regexp.MustCompile(`^(\S*)\s+(\S+)\s+\[(\S+) ([^\]]*?)(?: from (\S+))?\]( \*| !)?\s*(.*)$`)
	prefInfo   = regexp.MustCompile(`^\((\d+)(-?)(s?)`)
	tableLine  = regexp.MustCompile(`^Table (\S+):$`)
	nextHopVia = regexp.MustCompile(`^via (\S+) on (\S+)(?: weight (\d+))?`)
	nextHopDev = regexp.MustCompile(`^dev (\S+)(?: weight (\d+))?`)
)

// ParseRoutes reads a `show route ... all` reply (or one without "all":
// then Attrs stay empty). Lines are told apart by their shape, not by
// their code, since BIRD puts a table's routes under one code.
func ParseRoutes(reply Reply) ([]Route, error) {
	var routes []Route
	table, prefix := "", ""
	var cur *Route
	for _, l := range reply {
		if l.Code < 1000 || l.Code >= 2000 {
			continue // 0000 end, 0014 route counts, headings
		}
		text := l.Text
		switch {
		case strings.TrimSpace(text) == "":
		case tableLine.MatchString(text):
			table = tableLine.FindStringSubmatch(text)[1]
			prefix, cur = "", nil
		case strings.HasPrefix(text, "\t"):
			if cur == nil {
				return nil, fmt.Errorf("route detail before any route: %q", text)
			}
			cur.addDetail(strings.TrimPrefix(text, "\t"))
		default:
			m := routeLine.FindStringSubmatch(text)
			if m == nil {
				return nil, fmt.Errorf("route line %q: not PREFIX TYPE [PROTO SINCE] ...", text)
			}
			if m[1] != "" {
				prefix = m[1]
			}
			if prefix == "" {
				return nil, fmt.Errorf("route line %q: no prefix", text)
			}
			routes = append(routes, Route{Table: table, Prefix: prefix, Type: m[2], Protocol: m[3],
				Since: m[4], From: m[5], Primary: m[6] != "", SyncError: m[6] == " !",
				Info: m[7], Attrs: map[string]string{}})
			cur = &routes[len(routes)-1]
			if p := prefInfo.FindStringSubmatch(m[7]); p != nil {
				cur.Preference, _ = strconv.Atoi(p[1])
				cur.LLStale = p[3] == "s"
			}
		}
	}
	return routes, nil
}

func (rt *Route) addDetail(d string) {
	if m := nextHopVia.FindStringSubmatch(d); m != nil {
		w, _ := strconv.Atoi(m[3])
		rt.NextHops = append(rt.NextHops, NextHop{Via: m[1], Dev: m[2], Weight: w})
		return
	}
	if m := nextHopDev.FindStringSubmatch(d); m != nil {
		w, _ := strconv.Atoi(m[2])
		rt.NextHops = append(rt.NextHops, NextHop{Dev: m[1], Weight: w})
		return
	}
	if k, v, ok := strings.Cut(d, ":"); ok {
		rt.Attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
}
