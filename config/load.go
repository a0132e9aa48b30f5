package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Load reads the file at path, applies defaults and validates it. Use Read
// instead when command-line overrides must be applied before validation.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config file %s is invalid:\n%w", path, err)
	}
	return c, nil
}

// Read parses the file at path strictly (unknown keys and malformed values
// are errors) and does nothing else: no defaults, no validation.
func Read(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s:\n%w", path, err)
	}
	return c, nil
}

// Parse is Load for a configuration already in memory.
func Parse(data []byte) (*Config, error) {
	c, err := decode(data)
	if err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode unmarshals strictly. Before decoding it walks the document against
// the Config type, because the JSON decoder alone is not strict enough and
// not specific enough: encoding/json matches keys case-insensitively (so
// "nodename" or a second "NodeName" would slip through), reports an
// unknown key without saying where it is, and reports a bad duration
// without naming its field at all.
func decode(data []byte) (*Config, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if _, isMap := doc.(map[string]any); !isMap && doc != nil {
		return nil, errors.New("not a configuration: the top level must be a mapping of keys such as nodeName, asn, peers")
	}
	var problems []error
	checkShape(&problems, "", doc, reflect.TypeFor[Config]())
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}

	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, err
	}
	return c, nil
}

var durationType = reflect.TypeFor[metav1.Duration]()

// checkShape reports, with their paths, keys the type does not have (with
// the right spelling for a near miss in case), durations that do not parse,
// and strings that YAML read as numbers or booleans. Everything else
// (numbers out of range for their Go type, a string where a list belongs)
// is left to the decoder, whose messages name the field.
func checkShape(problems *[]error, path string, v any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return
	}
	switch {
	case t == durationType:
		s, ok := v.(string)
		if !ok {
			*problems = append(*problems, &FieldError{Field: path, Value: fmt.Sprint(v),
				Allowed: `must be a duration string with a unit, such as "90s" or "1m30s"`})
			return
		}
		if _, err := time.ParseDuration(s); err != nil {
			*problems = append(*problems, &FieldError{Field: path, Value: s,
				Allowed: `must be a duration with a unit, such as "90s" or "1m30s"`})
		}
	case t.Kind() == reflect.String:
		// sigs.k8s.io/yaml would turn an unquoted 012345 into "5349" (YAML
		// 1.1 octal) and yes into "true" without a word; for a password
		// or a node name that is a silent, baffling mismatch.
		if _, ok := v.(string); !ok {
			value, readAs := fmt.Sprint(v), yamlKind(v)
			if isSecret(path) {
				value = "<not shown>"
			} else {
				readAs += " " + value
			}
			allowed := "must be a string: put it in quotes, because unquoted YAML read it as " + readAs
			if _, scalar := v.(float64); !scalar {
				if _, scalar = v.(bool); !scalar {
					allowed = "must be a string, not " + yamlKind(v)
				}
			}
			*problems = append(*problems, &FieldError{Field: path, Value: value, Allowed: allowed})
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return // the decoder names the field and the type it wanted
		}
		fields := jsonFields(t)
		// In sorted order, so that the same file gives the same message.
		for _, key := range slices.Sorted(maps.Keys(m)) {
			ft, known := fields[key]
			if !known {
				*problems = append(*problems, unknownKey(join(path, key), key, fields))
				continue
			}
			checkShape(problems, join(path, key), m[key], ft)
		}
	case t.Kind() == reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return
		}
		for i, item := range list {
			checkShape(problems, fmt.Sprintf("%s[%d]", path, i), item, t.Elem())
		}
	}
}

func yamlKind(v any) string {
	switch v.(type) {
	case float64:
		return "the number"
	case bool:
		return "the boolean"
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

func unknownKey(path, key string, fields map[string]reflect.Type) *FieldError {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return &FieldError{Field: path, Value: key,
				Allowed: fmt.Sprintf("unknown key; keys are case-sensitive, did you mean %q?", name)}
		}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	return &FieldError{Field: path, Value: key,
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
