package bgppeer

import (
	"encoding/binary"
	"math/rand/v2"
)

// Mutate returns a damaged copy of msg, a whole UPDATE (or any message),
// and the names of what it did: one to three mutations drawn from r,
// mostly aware of the UPDATE's layout (length fields of the withdrawn
// routes, the attributes and each attribute, attribute flags and types,
// prefix lengths), some blind (bit flips, byte values, truncation,
// appended garbage). The header's length field is fixed up afterwards,
// so that the stream stays framed, except by the "header-length"
// mutation, whose point is to break the framing. The same r state gives
// the same result.
func Mutate(r *rand.Rand, msg []byte) ([]byte, []string) {
	out := append([]byte(nil), msg...)
	if len(out) < HeaderLen {
		out = append(out, make([]byte, HeaderLen-len(out))...)
	}
	n := 1
	switch x := r.IntN(10); {
	case x >= 9:
		n = 3
	case x >= 7:
		n = 2
	}
	var kinds []string
	framed := true
	for range n {
		m := pickMutation(r)
		out = m.apply(r, out)
		kinds = append(kinds, m.name)
		if m.name == "header-length" {
			framed = false
		}
	}
	if framed && len(out) <= MaxExtendedMessage {
		binary.BigEndian.PutUint16(out[16:18], uint16(len(out)))
	}
	return out, kinds
}

type mutation struct {
	name   string
	weight int
	apply  func(r *rand.Rand, msg []byte) []byte
}

var mutations = []mutation{
	{"bit-flip", 20, func(r *rand.Rand, m []byte) []byte {
		if len(m) == HeaderLen {
			return m
		}
		for range 1 + r.IntN(4) {
			i := HeaderLen + r.IntN(len(m)-HeaderLen)
			m[i] ^= 1 << r.IntN(8)
		}
		return m
	}},
	{"byte-value", 10, func(r *rand.Rand, m []byte) []byte {
		if len(m) == HeaderLen {
			return m
		}
		m[HeaderLen+r.IntN(len(m)-HeaderLen)] = interestingByte(r)
		return m
	}},
	{"withdrawn-length", 6, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		return setField(r, m, l.withdrawnLen, 2, len(m)-HeaderLen)
	}},
	{"attributes-length", 6, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		return setField(r, m, l.attrsLen, 2, len(m)-HeaderLen)
	}},
	{"attribute-length", 10, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.attrs) == 0 {
			return m
		}
		a := l.attrs[r.IntN(len(l.attrs))]
		return setField(r, m, a.lenOff, a.lenSize, a.valueLen)
	}},
	{"attribute-flags", 8, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.attrs) == 0 {
			return m
		}
		a := l.attrs[r.IntN(len(l.attrs))]
		flags := []uint8{FlagOptional, FlagTransitive, FlagPartial, FlagExtendedLength, 0x0f}
		m[a.off] ^= flags[r.IntN(len(flags))]
		return m
	}},
	{"attribute-type", 6, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.attrs) == 0 {
			return m
		}
		types := []uint8{0, AttrOrigin, AttrASPath, AttrNextHop, 4, 5, 8, AttrMPReach, AttrMPUnreach, 17, 32, 255, uint8(r.IntN(256))}
		m[l.attrs[r.IntN(len(l.attrs))].off+1] = types[r.IntN(len(types))]
		return m
	}},
	{"attribute-duplicate", 4, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.attrs) == 0 {
			return m
		}
		a := l.attrs[r.IntN(len(l.attrs))]
		end := a.valueOff + a.valueLen
		dup := append([]byte(nil), m[a.off:end]...)
		m = append(m[:end], append(dup, m[end:]...)...)
		return addField(m, l.attrsLen, len(dup))
	}},
	{"attribute-drop", 4, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.attrs) == 0 {
			return m
		}
		a := l.attrs[r.IntN(len(l.attrs))]
		end := a.valueOff + a.valueLen
		size := end - a.off
		m = append(m[:a.off], m[end:]...)
		return addField(m, l.attrsLen, -size)
	}},
	{"prefix-length", 8, func(r *rand.Rand, m []byte) []byte {
		l := layoutOf(m)
		if len(l.prefixLens) == 0 {
			return m
		}
		lens := []uint8{0, 1, 7, 8, 25, 32, 33, 64, 120, 128, 129, 255}
		m[l.prefixLens[r.IntN(len(l.prefixLens))]] = lens[r.IntN(len(lens))]
		return m
	}},
	{"truncate", 8, func(r *rand.Rand, m []byte) []byte {
		if len(m) == HeaderLen {
			return m
		}
		return m[:HeaderLen+r.IntN(len(m)-HeaderLen)]
	}},
	{"append", 5, func(r *rand.Rand, m []byte) []byte {
		for range 1 + r.IntN(32) {
			m = append(m, interestingByte(r))
		}
		return m
	}},
	{"header-length", 1, func(r *rand.Rand, m []byte) []byte {
		return setField(r, m, 16, 2, len(m))
	}},
}

func pickMutation(r *rand.Rand) mutation {
	total := 0
	for _, m := range mutations {
		total += m.weight
	}
	x := r.IntN(total)
	for _, m := range mutations {
		if x < m.weight {
			return m
		}
		x -= m.weight
	}
	return mutations[0]
}

func interestingByte(r *rand.Rand) byte {
	vals := []byte{0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff}
	if r.IntN(2) == 0 {
		return byte(r.IntN(256))
	}
	return vals[r.IntN(len(vals))]
}

// setField overwrites the size-byte (1 or 2) big-endian field at off with
// a value near cur or an extreme one. An offset outside m changes nothing.
func setField(r *rand.Rand, m []byte, off, size, cur int) []byte {
	if off < 0 || off+size > len(m) {
		return m
	}
	maxV := 1<<(8*size) - 1
	var v int
	switch r.IntN(4) {
	case 0:
		v = cur + 1 + r.IntN(8)
	case 1:
		v = cur - 1 - r.IntN(8)
	case 2:
		v = []int{0, 1, maxV, maxV - 1, maxV / 2}[r.IntN(5)]
	default:
		v = r.IntN(maxV + 1)
	}
	v = min(max(v, 0), maxV)
	if size == 1 {
		m[off] = uint8(v)
	} else {
		binary.BigEndian.PutUint16(m[off:], uint16(v))
	}
	return m
}

// addField adds delta to the 2-byte field at off (when inside m).
func addField(m []byte, off, delta int) []byte {
	if off >= 0 && off+2 <= len(m) {
		binary.BigEndian.PutUint16(m[off:], uint16(int(binary.BigEndian.Uint16(m[off:]))+delta))
	}
	return m
}

// updateLayout is where the fields of an UPDATE are, as far as its own
// length fields can be trusted; -1 for what is not there.
type updateLayout struct {
	withdrawnLen int // offset of the withdrawn routes length
	attrsLen     int // offset of the total path attribute length
	attrs        []attrLayout
	prefixLens   []int // offsets of prefix length bytes (withdrawn, NLRI, MP_REACH/UNREACH)
}

type attrLayout struct {
	off, lenOff, lenSize, valueOff, valueLen int
	typ                                      uint8
}

// layoutOf reads the layout of the UPDATE in msg, tolerantly: it stops
// where the message stops making sense.
func layoutOf(msg []byte) updateLayout {
	l := updateLayout{withdrawnLen: -1, attrsLen: -1}
	if len(msg) < HeaderLen+2 || msg[18] != TypeUpdate {
		return l
	}
	l.withdrawnLen = HeaderLen
	wEnd := HeaderLen + 2 + int(binary.BigEndian.Uint16(msg[HeaderLen:]))
	if wEnd+2 > len(msg) {
		return l
	}
	l.prefixLens = append(l.prefixLens, prefixOffsets(msg, HeaderLen+2, wEnd)...)
	l.attrsLen = wEnd
	aEnd := wEnd + 2 + int(binary.BigEndian.Uint16(msg[wEnd:]))
	if aEnd > len(msg) {
		aEnd = len(msg)
	}
	for off := wEnd + 2; off+3 <= aEnd; {
		a := attrLayout{off: off, lenOff: off + 2, lenSize: 1, typ: msg[off+1]}
		if msg[off]&FlagExtendedLength != 0 {
			a.lenSize = 2
		}
		a.valueOff = a.lenOff + a.lenSize
		if a.valueOff > aEnd {
			break
		}
		if a.lenSize == 1 {
			a.valueLen = int(msg[a.lenOff])
		} else {
			a.valueLen = int(binary.BigEndian.Uint16(msg[a.lenOff:]))
		}
		if a.valueOff+a.valueLen > aEnd {
			break
		}
		l.attrs = append(l.attrs, a)
		switch a.typ {
		case AttrMPReach:
			v := msg[a.valueOff : a.valueOff+a.valueLen]
			if len(v) >= 4 && 4+int(v[3])+1 <= len(v) {
				start := a.valueOff + 4 + int(v[3]) + 1
				l.prefixLens = append(l.prefixLens, prefixOffsets(msg, start, a.valueOff+a.valueLen)...)
			}
		case AttrMPUnreach:
			if a.valueLen >= 3 {
				l.prefixLens = append(l.prefixLens, prefixOffsets(msg, a.valueOff+3, a.valueOff+a.valueLen)...)
			}
		}
		off = a.valueOff + a.valueLen
	}
	l.prefixLens = append(l.prefixLens, prefixOffsets(msg, aEnd, len(msg))...)
	return l
}

// prefixOffsets lists the offsets of the prefix length bytes of the NLRI
// between start and end (at most 64, from the first).
func prefixOffsets(msg []byte, start, end int) []int {
	var out []int
	for off := start; off < end && off < len(msg) && len(out) < 64; {
		out = append(out, off)
		off += 1 + (int(msg[off])+7)/8
	}
	return out
}
