package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxBodyBytes is the largest resource document accepted (1 MiB).
const MaxBodyBytes = 1 << 20

// maxDepth bounds nesting. Our resources are at most five levels deep; the
// bound keeps the tree builders' recursion small whatever the input.
const maxDepth = 32

// maxProblems caps how many structural problems one document reports.
const maxProblems = 50

// ErrTooLarge means a body exceeded MaxBodyBytes.
var ErrTooLarge = errors.New("body exceeds 1 MiB")

// Format is the serialisation of a request or response body.
type Format int

const (
	FormatJSON Format = iota + 1
	FormatYAML
)

// String names the format's canonical media type.
func (f Format) String() string {
	if f == FormatYAML {
		return "text/yaml"
	}
	return "application/json"
}

// FormatFromMediaType maps a Content-Type (parameters ignored) to a Format.
// ok is false for media types that are neither JSON nor YAML.
func FormatFromMediaType(contentType string) (f Format, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "application/json", "application/fhir+json", "text/json":
		return FormatJSON, true
	case "text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml":
		return FormatYAML, true
	}
	return 0, false
}

// SyntaxError means a body is not a JSON or YAML document we accept: broken
// syntax, YAML aliases, excessive nesting, a top level that is not an object.
// The admin API answers it with 400. Path is set when the spot is known.
type SyntaxError struct {
	Path string
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("unparseable body at %s: %s", e.Path, e.Msg)
	}
	return "unparseable body: " + e.Msg
}

// ReadBody reads at most MaxBodyBytes from r; more is ErrTooLarge.
func ReadBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, ErrTooLarge
	}
	return b, nil
}

// Parse turns a JSON or YAML body into a generic tree (map[string]any with
// string, bool, json.Number, []any, map[string]any and nil leaves). YAML is
// read as a node tree and aliases are refused, so an alias bomb costs no
// more than its own bytes. Duplicate keys are refused in both formats.
func Parse(data []byte, f Format) (map[string]any, error) {
	if len(data) > MaxBodyBytes {
		return nil, ErrTooLarge
	}
	var (
		v   any
		err error
	)
	switch f {
	case FormatJSON:
		v, err = parseJSON(data)
	case FormatYAML:
		v, err = parseYAML(data)
	default:
		return nil, &SyntaxError{Msg: "unsupported format"}
	}
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &SyntaxError{Msg: "the document must be an object (a mapping of field names to values)"}
	}
	return m, nil
}

func parseJSON(data []byte) (any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &SyntaxError{Msg: "empty body"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := jsonValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &SyntaxError{Msg: "unexpected data after the JSON document"}
	}
	return v, nil
}

func jsonSyntax(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Msg: fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &SyntaxError{Msg: "invalid JSON: unexpected end of input"}
	}
	return &SyntaxError{Msg: "invalid JSON: " + err.Error()}
}

func jsonValue(dec *json.Decoder, path string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, &SyntaxError{Path: path, Msg: "nesting too deep"}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonSyntax(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, jsonSyntax(err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, &SyntaxError{Path: path, Msg: "object key is not a string"}
				}
				kp := joinPath(path, k)
				if _, dup := m[k]; dup {
					return nil, &SyntaxError{Path: kp, Msg: "duplicate key"}
				}
				v, err := jsonValue(dec, kp, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, jsonSyntax(err)
			}
			return m, nil
		case '[':
			l := []any{}
			for dec.More() {
				v, err := jsonValue(dec, indexPath(path, len(l)), depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, jsonSyntax(err)
			}
			return l, nil
		}
		return nil, &SyntaxError{Path: path, Msg: fmt.Sprintf("unexpected %q", rune(t))}
	default:
		return t, nil // string, bool, json.Number or nil
	}
}

func parseYAML(data []byte) (v any, err error) {
	var doc yaml.Node
	if err := safeYAMLUnmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || (doc.Kind == yaml.DocumentNode && len(doc.Content) == 0) {
		return nil, &SyntaxError{Msg: "empty body"}
	}
	return yamlValue(&doc, "", 0)
}

// safeYAMLUnmarshal parses one YAML document into a node tree. yaml.v3 has
// panicked on malformed input in past releases; a panic here would take the
// request (or the CLI) down, so it becomes a syntax error instead.
func safeYAMLUnmarshal(data []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &SyntaxError{Msg: "invalid YAML"}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(n); err != nil {
		if errors.Is(err, io.EOF) {
			return &SyntaxError{Msg: "empty body"}
		}
		return &SyntaxError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return &SyntaxError{Msg: "expected a single YAML document"}
	}
	return nil
}

func yamlValue(n *yaml.Node, path string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, &SyntaxError{Path: path, Msg: "nesting too deep"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, &SyntaxError{Msg: "expected a single YAML document"}
		}
		return yamlValue(n.Content[0], path, depth)
	case yaml.AliasNode:
		return nil, &SyntaxError{Path: path, Msg: "YAML aliases are not supported"}
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind == yaml.AliasNode {
				return nil, &SyntaxError{Path: path, Msg: "YAML aliases are not supported"}
			}
			if kn.Kind != yaml.ScalarNode || kn.ShortTag() == "!!null" {
				return nil, &SyntaxError{Path: path, Msg: "mapping key is not a plain string"}
			}
			k := kn.Value
			kp := joinPath(path, k)
			if kn.ShortTag() == "!!merge" {
				return nil, &SyntaxError{Path: kp, Msg: "YAML merge keys are not supported"}
			}
			if _, dup := m[k]; dup {
				return nil, &SyntaxError{Path: kp, Msg: "duplicate key"}
			}
			v, err := yamlValue(vn, kp, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			v, err := yamlValue(c, indexPath(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		return yamlScalar(n, path)
	}
	return nil, &SyntaxError{Path: path, Msg: "unsupported YAML node"}
}

func yamlScalar(n *yaml.Node, path string) (any, error) {
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		// A plain 2024-01-02 resolves as a timestamp; our fields that hold
		// dates hold them as text, so keep what was written.
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, &SyntaxError{Path: path, Msg: "invalid boolean"}
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, &SyntaxError{Path: path, Msg: "integer out of range"}
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &SyntaxError{Path: path, Msg: "not a finite number"}
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	return nil, &SyntaxError{Path: path, Msg: fmt.Sprintf("unsupported YAML tag %s", n.ShortTag())}
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string { return fmt.Sprintf("%s[%d]", base, i) }

// DecodeTree checks tree against the shape of out (a pointer to User, Client,
// AuthConfig or any struct with json tags) and fills out. Unknown fields and
// values of the wrong type come back as one *ValidationError naming every
// offending path (e.g. twoFactor.webhook.timeot).
func DecodeTree(tree map[string]any, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode: out must be a non-nil pointer, got %T", out)
	}
	var p problems
	checkValue(tree, rv.Elem().Type(), "", &p, false)
	if err := p.err(); err != nil {
		return err
	}
	// The tree now has exactly the shape of out, so the standard decoder
	// (which matches keys case-insensitively) sees only exact keys.
	b, err := json.Marshal(tree)
	if err != nil {
		return &SyntaxError{Msg: "re-encode: " + err.Error()}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &SyntaxError{Msg: err.Error()}
	}
	return nil
}

// Decode parses data in format f strictly into out (see Parse and DecodeTree).
func Decode(data []byte, f Format, out any) error {
	tree, err := Parse(data, f)
	if err != nil {
		return err
	}
	return DecodeTree(tree, out)
}

// DecodeUser decodes and normalises a User body.
func DecodeUser(data []byte, f Format) (User, error) {
	var u User
	if err := Decode(data, f, &u); err != nil {
		return User{}, err
	}
	u.Normalize()
	return u, nil
}

// DecodeClient decodes a Client body. grant_types stay as written (so the
// API reads them back unchanged); HasGrant and EffectiveGrantTypes read
// `code` as authorization_code, and ClientFromStore normalises.
func DecodeClient(data []byte, f Format) (Client, error) {
	var c Client
	if err := Decode(data, f, &c); err != nil {
		return Client{}, err
	}
	return c, nil
}

// DecodeAuthConfig decodes an AuthConfig body.
func DecodeAuthConfig(data []byte, f Format) (AuthConfig, error) {
	var a AuthConfig
	if err := Decode(data, f, &a); err != nil {
		return AuthConfig{}, err
	}
	return a, nil
}

// DecodeAs decodes tree as the resource type typ and returns *User, *Client
// or *AuthConfig (users normalised, as DecodeUser; clients as written, as
// DecodeClient).
func DecodeAs(typ string, tree map[string]any) (any, error) {
	switch typ {
	case TypeUser:
		var u User
		if err := DecodeTree(tree, &u); err != nil {
			return nil, err
		}
		u.Normalize()
		return &u, nil
	case TypeClient:
		var c Client
		if err := DecodeTree(tree, &c); err != nil {
			return nil, err
		}
		return &c, nil
	case TypeAuthConfig:
		var a AuthConfig
		if err := DecodeTree(tree, &a); err != nil {
			return nil, err
		}
		return &a, nil
	}
	return nil, Invalid("resourceType", CodeValue, fmt.Sprintf("unknown resource type %q (want User, Client or AuthConfig)", typ))
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	stringListType = reflect.TypeFor[StringList]()
	rawJSONType    = reflect.TypeFor[json.RawMessage]()
)

// checkValue reports where v does not fit t. inList is true for elements of
// lists and maps, where null is not a way of saying "unset".
func checkValue(v any, t reflect.Type, path string, p *problems, inList bool) {
	if p.full() {
		return
	}
	if v == nil {
		if inList {
			p.add(path, CodeStructure, "null is not allowed here")
		}
		return
	}
	switch t {
	case rawJSONType:
		// A document of its own (a client's jwks), checked where it is used.
		if _, ok := v.(map[string]any); !ok {
			p.add(path, CodeStructure, "expected an object, got "+describe(v))
		}
		return
	case timeType:
		s, ok := v.(string)
		if !ok {
			p.add(path, CodeStructure, "expected a date-time string")
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			p.add(path, CodeStructure, "expected an RFC 3339 date-time")
		}
		return
	case stringListType:
		switch x := v.(type) {
		case string:
		case []any:
			for i, e := range x {
				if _, ok := e.(string); !ok {
					p.add(indexPath(path, i), CodeStructure, "expected a string")
				}
			}
		default:
			p.add(path, CodeStructure, "expected a string or a list of strings")
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkValue(v, t.Elem(), path, p, inList)
	case reflect.String:
		if _, ok := v.(string); !ok {
			p.add(path, CodeStructure, "expected a string, got "+describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			p.add(path, CodeStructure, "expected true or false, got "+describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			p.add(path, CodeStructure, "expected an integer, got "+describe(v))
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			p.add(path, CodeStructure, "expected an integer in range, got "+string(n))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			p.add(path, CodeStructure, "expected a number, got "+describe(v))
			return
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			p.add(path, CodeStructure, "number out of range")
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			p.add(path, CodeStructure, "expected a list, got "+describe(v))
			return
		}
		for i, e := range l {
			checkValue(e, t.Elem(), indexPath(path, i), p, true)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			p.add(path, CodeStructure, "expected an object, got "+describe(v))
			return
		}
		for _, k := range sortedKeys(m) {
			checkValue(m[k], t.Elem(), joinPath(path, k), p, true)
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			p.add(path, CodeStructure, "expected an object, got "+describe(v))
			return
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			if !known {
				p.add(joinPath(path, k), CodeStructure, "unknown field")
				continue
			}
			checkValue(m[k], ft, joinPath(path, k), p, false)
		}
	case reflect.Interface:
		// Any value fits.
	default:
		p.add(path, CodeStructure, "field cannot be set")
	}
}

// jsonFields maps the JSON names of t's exported, serialised fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "null"
}
