package nft

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseTable reads `nft -j list table` output back into a State: chain
// names with their rule count and first comment (the digest), sets and maps
// with their elements in the canonical spelling Render uses where it can.
// Elements it cannot spell canonically keep a spelling that differs from
// any Render makes, so the set is refilled rather than wrongly kept.
func parseTable(out []byte) (*State, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parsing nft's JSON: %w", err)
	}
	s := &State{Chains: map[string]*Chain{}, Sets: map[string]*Set{}}
	for _, obj := range doc.Nftables {
		switch {
		case obj["chain"] != nil:
			var c struct {
				Name string `json:"name"`
				Hook string `json:"hook"`
				Prio any    `json:"prio"`
			}
			if err := json.Unmarshal(obj["chain"], &c); err != nil {
				return nil, err
			}
			s.Chains[c.Name] = &Chain{Name: c.Name, Hook: c.Hook}
		case obj["rule"] != nil:
			var r struct {
				Chain   string `json:"chain"`
				Comment string `json:"comment"`
			}
			if err := json.Unmarshal(obj["rule"], &r); err != nil {
				return nil, err
			}
			c := s.Chains[r.Chain]
			if c == nil {
				continue
			}
			// Every rule carries the chain's digest: a rule added, removed
			// or replaced by hand shows as a count or digest mismatch.
			if d := digestFromComment(r.Comment); len(c.Rules) == 0 {
				c.Digest = d
			} else if d != c.Digest {
				c.Digest = "mismatch"
			}
			// The rule text is not needed: the digest stands for it.
			c.Rules = append(c.Rules, "")
		case obj["set"] != nil || obj["map"] != nil:
			raw, isMap := obj["set"], false
			if raw == nil {
				raw, isMap = obj["map"], true
			}
			var st struct {
				Name  string            `json:"name"`
				Type  any               `json:"type"`
				Flags []string          `json:"flags"`
				Elem  []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, err
			}
			set := &Set{Name: st.Name, Map: isMap, Elems: map[string]string{}, unsure: true}
			for _, f := range st.Flags {
				if f == "interval" {
					set.Interval = true
				}
			}
			for _, e := range st.Elem {
				k, v, err := parseElem(e, isMap, set.Interval)
				if err != nil {
					return nil, fmt.Errorf("set %s: %w", st.Name, err)
				}
				set.Elems[k] = v
			}
			s.Sets[st.Name] = set
		}
	}
	// An empty chain has the digest of no rules.
	for _, c := range s.Chains {
		if len(c.Rules) == 0 {
			c.Digest = digest(c.Hook, "", nil)
		}
	}
	return s, nil
}

func parseElem(raw json.RawMessage, isMap, interval bool) (key, value string, err error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", "", err
	}
	if isMap {
		pair, ok := v.([]any)
		if !ok || len(pair) != 2 {
			return "", "", fmt.Errorf("map element %s is not [key, value]", raw)
		}
		return keyString(pair[0], interval), verdictString(pair[1]), nil
	}
	return keyString(v, interval), "", nil
}

// keyString spells a key as Render does: prefixes for interval sets,
// "a . b . c" for concatenations, canonical addresses.
func keyString(v any, interval bool) string {
	switch x := v.(type) {
	case string:
		if a, err := netip.ParseAddr(x); err == nil {
			if interval {
				return netip.PrefixFrom(a, a.BitLen()).String()
			}
			return a.String()
		}
		return x
	case float64:
		return strconv.Itoa(int(x))
	case map[string]any:
		if e, ok := x["elem"].(map[string]any); ok { // an element with a comment
			return keyString(e["val"], interval)
		}
		if p, ok := x["prefix"].(map[string]any); ok {
			addr, _ := p["addr"].(string)
			l, _ := p["len"].(float64)
			if a, err := netip.ParseAddr(addr); err == nil {
				return netip.PrefixFrom(a, int(l)).String()
			}
			return fmt.Sprintf("%v/%v", addr, l)
		}
		if c, ok := x["concat"].([]any); ok {
			parts := make([]string, len(c))
			for i, p := range c {
				parts[i] = keyString(p, false)
			}
			return strings.Join(parts, " . ")
		}
		if r, ok := x["range"].([]any); ok && len(r) == 2 {
			lo, err1 := netip.ParseAddr(fmt.Sprint(r[0]))
			hi, err2 := netip.ParseAddr(fmt.Sprint(r[1]))
			if err1 == nil && err2 == nil {
				return rangeKey(lo, hi)
			}
			return fmt.Sprintf("range %v-%v", r[0], r[1])
		}
	}
	return fmt.Sprintf("unknown %v", v)
}

func verdictString(v any) string {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return fmt.Sprintf("unknown %v", v)
	}
	for k, t := range m {
		if target, ok := t.(map[string]any); ok {
			return fmt.Sprintf("%s %v", k, target["target"])
		}
		return k
	}
	return ""
}
