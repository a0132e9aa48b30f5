package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Load reads the file at path, applies defaults and validates it. Use Read
// instead when command-line overrides must be applied before validation.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if c == nil {
		return nil, err
	}
	// Values Read left out are reported again by Validate, with the rest.
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config file %s is invalid:\n%w", path, err)
	}
	return c, nil
}

// Read parses the file at path strictly and does nothing else: no defaults,
// no validation. Unknown keys and values the field cannot hold (a string
// where a number belongs, a number too large for its field, a single value
// where a list belongs, a duration without a unit) are errors, each a
// *FieldError.
//
// On such errors Read still returns the Config, with those values left out,
// and Validate reports the same problems first: a caller can apply its
// overrides and defaults, validate, and show everything that is wrong with
// the file at once. A nil Config means the file could not be read or is not
// a YAML mapping.
func Read(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := decode(data)
	if err != nil {
		return c, fmt.Errorf("config file %s:\n%w", path, err)
	}
	return c, nil
}

// Parse is Load for a configuration already in memory.
func Parse(data []byte) (*Config, error) {
	c, err := decode(data)
	if c == nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode unmarshals strictly. It first walks the document against the
// Config type, because the JSON decoder alone is neither strict nor clear
// enough: encoding/json matches keys case-insensitively (so "nodename" or
// a second "NodeName" would slip through), stops at the first mistyped
// value, and says "cannot unmarshal string into Go struct field
// Config.asn of type uint32" where the operator needs the key, the value
// and what is allowed. The walk reports every such value and leaves it out;
// what remains always decodes.
func decode(data []byte) (*Config, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber() // numbers as written, not rounded to float64
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if _, isMap := doc.(map[string]any); !isMap && doc != nil {
		return nil, errors.New("not a configuration: the top level must be a mapping of keys such as nodeName, asn, peers")
	}
	s := &shapeChecker{}
	doc = s.check("", doc, reflect.TypeFor[Config]())

	clean, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("re-encoding the configuration: %w", err)
	}
	c := &Config{}
	dec = json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		// The walk should have caught it; say so rather than guess a field.
		return nil, fmt.Errorf("configuration not understood (please report this with the file): %w", err)
	}
	c.read = readNotes{problems: s.problems, left: s.left, written: s.written}
	if len(s.problems) > 0 {
		return c, errors.Join(s.problems...)
	}
	return c, nil
}

var durationType = reflect.TypeFor[metav1.Duration]()

// shapeChecker walks a decoded document against a Go type.
type shapeChecker struct {
	problems []error
	left     []string
	written  map[string]string
}

func (s *shapeChecker) report(path, value, allowed string) {
	s.problems = append(s.problems, &FieldError{Field: path, Value: value, Allowed: allowed})
	s.left = append(s.left, path)
}

// check returns what to decode in place of v: v itself, a copy without its
// bad parts, or nil (the key's zero value) when t cannot hold v at all;
// each thing left out is reported with its path, its value and what is
// allowed. Unknown keys are dropped and reported, with the right spelling
// for a near miss in case.
func (s *shapeChecker) check(path string, v any, t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // null or an empty value: the same as leaving the key out
	}
	value := shown(v)
	if isSecret(path) {
		value = "<not shown>"
	}
	switch {
	case t == durationType:
		str, ok := v.(string)
		if !ok {
			s.report(path, value, `must be a duration string with a unit, such as "90s" or "1m30s"`)
			return nil
		}
		if _, err := time.ParseDuration(str); err != nil {
			s.report(path, str, `must be a duration with a unit, such as "90s" or "1m30s"`)
			return nil
		}
		if s.written == nil {
			s.written = map[string]string{}
		}
		s.written[path] = str
	case t.Kind() == reflect.String:
		// sigs.k8s.io/yaml would turn an unquoted 012345 into "5349" (YAML
		// 1.1 octal) and yes into "true" without a word; for a password
		// or a node name that is a silent, baffling mismatch.
		if _, ok := v.(string); !ok {
			readAs := yamlKind(v)
			if !isSecret(path) {
				readAs += " " + shorten(value)
			}
			allowed := "must be a string: put it in quotes, because unquoted YAML read it as " + readAs
			if !isScalar(v) {
				allowed = "must be a string, not " + yamlKind(v)
			}
			s.report(path, value, allowed)
			return nil
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			allowed := "must be true or false"
			if str, isString := v.(string); isString && (str == "true" || str == "false") {
				allowed += ", without quotes"
			}
			s.report(path, value, allowed)
			return nil
		}
	case isInteger(t):
		if allowed, ok := checkInteger(v, t, numberRule(path, t)); !ok {
			s.report(path, value, allowed)
			return nil
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			s.report(path, value, "must be a mapping with keys such as "+someKeys(t)+notA(v))
			return nil
		}
		fields := jsonFields(t)
		out := make(map[string]any, len(m))
		// In sorted order, so that the same file gives the same message.
		for _, key := range slices.Sorted(maps.Keys(m)) {
			ft, known := fields[key]
			if !known {
				s.problems = append(s.problems, unknownKey(path, key, fields))
				continue
			}
			// A key whose value is left out (or null) is dropped, which
			// decodes as absent; a null duration would not decode at all.
			if checked := s.check(join(path, key), m[key], ft); checked != nil {
				out[key] = checked
			}
		}
		return out
	case t.Kind() == reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			s.report(path, value, listRule(v, t.Elem()))
			return nil
		}
		out := make([]any, len(list))
		for i, item := range list {
			// A bad item becomes null, not a gap, so that the items after
			// it keep their index in later messages.
			out[i] = s.check(fmt.Sprintf("%s[%d]", path, i), item, t.Elem())
		}
		return out
	}
	return v
}

// shown is a value as the file wrote it, as far as YAML kept it: strings
// and numbers as written (YAML 1.1 forms such as 0x10 arrive as 16), lists
// and mappings in JSON's compact form.
func shown(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func isScalar(v any) bool {
	switch v.(type) {
	case json.Number, bool, string:
		return true
	}
	return false
}

func notA(v any) string {
	if isScalar(v) {
		return ""
	}
	return ", not " + yamlKind(v)
}

func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// checkInteger tells whether v fits integer type t; if not, it returns
// rule (what the field allows) with a hint at what went wrong.
func checkInteger(v any, t reflect.Type, rule string) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		var err error
		if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
			_, err = strconv.ParseUint(x.String(), 10, t.Bits())
		} else {
			_, err = strconv.ParseInt(x.String(), 10, t.Bits())
		}
		if err == nil {
			return "", true
		}
		if f, ferr := x.Float64(); ferr == nil && f != math.Trunc(f) {
			return rule + ", a whole number", false
		}
		return rule, false // out of range for the field's type
	case string:
		if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return rule + "; write it without quotes (in quotes, YAML reads a string)", false
		}
		return rule + ", a number", false
	case bool:
		return rule + ", a number", false
	}
	return rule + ", a number, not " + yamlKind(v), false
}

// listRule says what a list key allows when the file gives something
// else, with the user's own value as the example where there is one.
func listRule(v any, elem reflect.Type) string {
	for elem.Kind() == reflect.Pointer {
		elem = elem.Elem()
	}
	if elem.Kind() == reflect.Struct && elem != durationType {
		return `must be a list of mappings with keys such as ` + someKeys(elem) + `, each entry starting with "- "` + notA(v)
	}
	if str, ok := v.(string); ok {
		return fmt.Sprintf(`must be a list: write [%s], or each item on its own line after "- "`, shorten(str))
	}
	return `must be a list, each item on its own line after "- "` + notA(v)
}

// someKeys names the first keys of a struct type, in declaration order.
func someKeys(t reflect.Type) string {
	var names []string
	for i := 0; i < t.NumField() && len(names) < 3; i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && t.Field(i).IsExported() {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

func yamlKind(v any) string {
	switch v.(type) {
	case json.Number:
		return "the number"
	case bool:
		return "the boolean"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

// isSecret tells which values error messages must not repeat.
func isSecret(path string) bool {
	return path == "password" || strings.HasSuffix(path, ".password")
}

// unknownKey reports key, found in the mapping at parent, which has no
// field of that name.
func unknownKey(parent, key string, fields map[string]reflect.Type) *FieldError {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	if key == "" {
		// An empty key has no path of its own: name the mapping it is in.
		where := parent
		if where == "" {
			where = "(top level)"
		}
		return &FieldError{Field: where, Value: "",
			Allowed: "an empty key; known keys here: " + strings.Join(names, ", ")}
	}
	for _, name := range names {
		if strings.EqualFold(name, key) {
			return &FieldError{Field: join(parent, key), Value: key,
				Allowed: fmt.Sprintf("unknown key; keys are case-sensitive, did you mean %q?", name)}
		}
	}
	return &FieldError{Field: join(parent, key), Value: key,
		Allowed: "unknown key; known keys here: " + strings.Join(names, ", ")}
}

// jsonFields maps each JSON key of struct type t to its field type.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
