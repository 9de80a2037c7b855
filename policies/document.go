package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// PolicyVersion is the policy language version rdsgate writes. IAM treats a
// document without a Version as 2008-10-17, which lacks policy variables.
const PolicyVersion = "2012-10-17"

// Effect is Allow or Deny.
type Effect string

// The two effects a statement may have.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Document is an IAM policy document: an identity policy (inline or managed)
// or a trust policy. It keeps the string-or-list form of every field as it was
// read, so writing a parsed document gives back the same elements; Normalize
// and Equivalent compare documents by meaning instead.
type Document struct {
	Version    string
	ID         string
	Statements []Statement
	// SingleStatement records a Statement element that was one object rather
	// than a list of them.
	SingleStatement bool
}

// Statement is one element of a document's Statement list.
type Statement struct {
	Sid          string
	Effect       Effect
	Principal    *Principal
	NotPrincipal *Principal
	Action       Values
	NotAction    Values
	Resource     Values
	NotResource  Values
	Condition    Condition
}

// Values is a policy field that IAM accepts as a string or a list of strings.
// A nil List means the field is absent.
type Values struct {
	List []string
	// Single writes the field as a bare string; it is only honoured when the
	// list has exactly one value.
	Single bool
	// Literal writes the values as JSON literals (true, 42) rather than
	// strings; only condition values can be literals.
	Literal bool
}

// List returns Values written as a JSON list.
func List(values ...string) Values { return Values{List: values} }

// One returns a single value written as a bare string.
func One(value string) Values { return Values{List: []string{value}, Single: true} }

// Present reports whether the field was given at all.
func (v Values) Present() bool { return v.List != nil }

// Principal is the Principal or NotPrincipal element: "*" or a map from a
// principal type (AWS, Service, Federated, CanonicalUser) to values.
type Principal struct {
	Any     bool
	Entries map[string]Values
}

// Condition maps a condition operator (StringEquals, ...) to condition keys
// and their values.
type Condition map[string]map[string]Values

var (
	// ErrMalformed marks a document that is not a well-formed IAM policy.
	ErrMalformed = errors.New("malformed policy document")
)

// MalformedError says where in a document the problem is.
type MalformedError struct {
	Path   string // for example Statement[2].Action
	Reason string
}

func (e *MalformedError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", ErrMalformed, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", ErrMalformed, e.Path, e.Reason)
}

func (e *MalformedError) Unwrap() error { return ErrMalformed }

func malformed(path, format string, args ...any) error {
	return &MalformedError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Parse reads a policy document as IAM accepts it: elements are case
// sensitive, unknown elements are refused, and every field that IAM takes as a
// string or a list keeps the form it was given in.
func Parse(data []byte) (*Document, error) {
	top, err := decodeObject(data, "")
	if err != nil {
		return nil, err
	}
	d := &Document{}
	for _, key := range slices.Sorted(maps.Keys(top)) {
		raw := top[key]
		switch key {
		case "Version":
			if d.Version, err = decodeString(raw, key); err != nil {
				return nil, err
			}
			if d.Version != PolicyVersion && d.Version != "2008-10-17" {
				return nil, malformed(key, "unknown version %q; use %q", d.Version, PolicyVersion)
			}
		case "Id":
			if d.ID, err = decodeString(raw, key); err != nil {
				return nil, err
			}
		case "Statement":
			if err := d.parseStatements(raw); err != nil {
				return nil, err
			}
		default:
			return nil, malformed("", "unknown element %q (elements are case sensitive: Version, Id, Statement)", key)
		}
	}
	if top["Statement"] == nil {
		return nil, malformed("", "missing Statement")
	}
	return d, nil
}

func (d *Document) parseStatements(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '{' {
		st, err := parseStatement(raw, "Statement")
		if err != nil {
			return err
		}
		d.Statements = []Statement{st}
		d.SingleStatement = true
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || list == nil {
		return malformed("Statement", "expected an object or a list of objects")
	}
	d.Statements = make([]Statement, 0, len(list))
	for i, item := range list {
		st, err := parseStatement(item, fmt.Sprintf("Statement[%d]", i))
		if err != nil {
			return err
		}
		d.Statements = append(d.Statements, st)
	}
	return nil
}

func parseStatement(data []byte, path string) (Statement, error) {
	var st Statement
	fields, err := decodeObject(data, path)
	if err != nil {
		return st, err
	}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[key]
		at := path + "." + key
		switch key {
		case "Sid":
			st.Sid, err = decodeString(raw, at)
		case "Effect":
			var e string
			e, err = decodeString(raw, at)
			if err == nil && e != string(Allow) && e != string(Deny) {
				err = malformed(at, "must be %q or %q, not %q", Allow, Deny, e)
			}
			st.Effect = Effect(e)
		case "Principal":
			st.Principal, err = parsePrincipal(raw, at)
		case "NotPrincipal":
			st.NotPrincipal, err = parsePrincipal(raw, at)
		case "Action":
			st.Action, err = decodeValues(raw, at, false)
		case "NotAction":
			st.NotAction, err = decodeValues(raw, at, false)
		case "Resource":
			st.Resource, err = decodeValues(raw, at, false)
		case "NotResource":
			st.NotResource, err = decodeValues(raw, at, false)
		case "Condition":
			st.Condition, err = parseCondition(raw, at)
		default:
			err = malformed(path, "unknown element %q", key)
		}
		if err != nil {
			return st, err
		}
	}
	switch {
	case st.Effect == "":
		return st, malformed(path, "missing Effect")
	case st.Action.Present() && st.NotAction.Present():
		return st, malformed(path, "has both Action and NotAction; keep one")
	case !st.Action.Present() && !st.NotAction.Present():
		return st, malformed(path, "missing Action (or NotAction)")
	case st.Resource.Present() && st.NotResource.Present():
		return st, malformed(path, "has both Resource and NotResource; keep one")
	case st.Principal != nil && st.NotPrincipal != nil:
		return st, malformed(path, "has both Principal and NotPrincipal; keep one")
	}
	return st, nil
}

func parsePrincipal(raw json.RawMessage, path string) (*Principal, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		s, err := decodeString(raw, path)
		if err != nil {
			return nil, err
		}
		if s != "*" {
			return nil, malformed(path, "a bare string principal must be \"*\"; name others as {\"AWS\": %q}", s)
		}
		return &Principal{Any: true}, nil
	}
	fields, err := decodeObject(raw, path)
	if err != nil {
		return nil, err
	}
	p := &Principal{Entries: make(map[string]Values, len(fields))}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		switch key {
		case "AWS", "Service", "Federated", "CanonicalUser":
		default:
			return nil, malformed(path, "unknown principal type %q (AWS, Service, Federated, CanonicalUser)", key)
		}
		v, err := decodeValues(fields[key], path+"."+key, false)
		if err != nil {
			return nil, err
		}
		p.Entries[key] = v
	}
	return p, nil
}

func parseCondition(raw json.RawMessage, path string) (Condition, error) {
	ops, err := decodeObject(raw, path)
	if err != nil {
		return nil, err
	}
	c := make(Condition, len(ops))
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		keys, err := decodeObject(ops[op], path+"."+op)
		if err != nil {
			return nil, err
		}
		m := make(map[string]Values, len(keys))
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			v, err := decodeValues(keys[k], path+"."+op+"."+k, true)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		c[op] = m
	}
	return c, nil
}

func decodeObject(data []byte, path string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, malformed(path, "invalid JSON at byte %d: %v", syn.Offset, syn)
		}
		return nil, malformed(path, "expected a JSON object")
	}
	if m == nil {
		return nil, malformed(path, "expected a JSON object, got null")
	}
	return m, nil
}

func decodeString(raw json.RawMessage, path string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformed(path, "expected a string")
	}
	return s, nil
}

// decodeValues reads a string or a list of strings. Condition values may also
// be JSON numbers or booleans, which IAM compares as their text.
func decodeValues(raw json.RawMessage, path string, condition bool) (Values, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Values{}, malformed(path, "expected a string or a list of strings")
	}
	if raw[0] != '[' {
		s, literal, err := decodeScalar(raw, path, condition)
		if err != nil {
			return Values{}, err
		}
		return Values{List: []string{s}, Single: true, Literal: literal}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return Values{}, malformed(path, "expected a string or a list of strings")
	}
	v := Values{List: make([]string, 0, len(items))}
	literals := 0
	for i, item := range items {
		s, literal, err := decodeScalar(bytes.TrimSpace(item), fmt.Sprintf("%s[%d]", path, i), condition)
		if err != nil {
			return Values{}, err
		}
		if literal {
			literals++
		}
		v.List = append(v.List, s)
	}
	v.Literal = literals > 0 && literals == len(items)
	return v, nil
}

func decodeScalar(raw []byte, path string, condition bool) (string, bool, error) {
	if len(raw) > 0 && raw[0] == '"' {
		s, err := decodeString(raw, path)
		return s, false, err
	}
	if condition {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil {
			switch t := v.(type) {
			case bool:
				return fmt.Sprint(t), true, nil
			case json.Number:
				return t.String(), true, nil
			}
		}
		return "", false, malformed(path, "expected a string, number or boolean")
	}
	return "", false, malformed(path, "expected a string")
}

// JSON writes the document as canonical compact JSON: elements in IAM's
// documented order, map keys sorted, no white space outside strings, and no
// HTML escaping. Its length in characters is the size IAM counts.
func (d *Document) JSON() []byte { return d.AppendJSON(nil) }

// String returns the canonical compact JSON.
func (d *Document) String() string { return string(d.JSON()) }

// Size is the size of the document as IAM counts it against quotas.
func (d *Document) Size() int { return utf8.RuneCount(d.JSON()) }

// AppendJSON appends the canonical compact JSON of d to b.
func (d *Document) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	if d.Version != "" {
		b = append(b, `"Version":`...)
		b = appendString(b, d.Version)
		sep = true
	}
	if d.ID != "" {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"Id":`...)
		b = appendString(b, d.ID)
		sep = true
	}
	if sep {
		b = append(b, ',')
	}
	b = append(b, `"Statement":`...)
	if d.SingleStatement && len(d.Statements) == 1 {
		b = d.Statements[0].appendJSON(b)
	} else {
		b = append(b, '[')
		for i := range d.Statements {
			if i > 0 {
				b = append(b, ',')
			}
			b = d.Statements[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (s *Statement) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := 0
	field := func(name string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if s.Sid != "" {
		field("Sid")
		b = appendString(b, s.Sid)
	}
	if s.Effect != "" {
		field("Effect")
		b = appendString(b, string(s.Effect))
	}
	if s.Principal != nil {
		field("Principal")
		b = s.Principal.appendJSON(b)
	}
	if s.NotPrincipal != nil {
		field("NotPrincipal")
		b = s.NotPrincipal.appendJSON(b)
	}
	for _, f := range []struct {
		name string
		v    *Values
	}{{"Action", &s.Action}, {"NotAction", &s.NotAction}, {"Resource", &s.Resource}, {"NotResource", &s.NotResource}} {
		if f.v.Present() {
			field(f.name)
			b = f.v.appendJSON(b)
		}
	}
	if s.Condition != nil {
		field("Condition")
		b = append(b, '{')
		for i, op := range slices.Sorted(maps.Keys(s.Condition)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, op)
			b = append(b, ":{"...)
			for j, k := range slices.Sorted(maps.Keys(s.Condition[op])) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendString(b, k)
				b = append(b, ':')
				b = s.Condition[op][k].appendJSON(b)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func (p *Principal) appendJSON(b []byte) []byte {
	if p.Any {
		return append(b, `"*"`...)
	}
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(p.Entries)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = p.Entries[k].appendJSON(b)
	}
	return append(b, '}')
}

func (v Values) appendJSON(b []byte) []byte {
	one := func(b []byte, s string) []byte {
		if v.Literal {
			return append(b, s...)
		}
		return appendString(b, s)
	}
	if v.Single && len(v.List) == 1 {
		return one(b, v.List[0])
	}
	b = append(b, '[')
	for i, s := range v.List {
		if i > 0 {
			b = append(b, ',')
		}
		b = one(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does with HTML
// escaping turned off, so canonical output round-trips through either.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// MarshalJSON writes the canonical compact form.
func (d *Document) MarshalJSON() ([]byte, error) { return d.JSON(), nil }

// UnmarshalJSON parses with Parse.
func (d *Document) UnmarshalJSON(data []byte) error {
	p, err := Parse(data)
	if err != nil {
		return err
	}
	*d = *p
	return nil
}

// Clone returns a deep copy.
func (d *Document) Clone() *Document {
	c, err := Parse(d.JSON())
	if err != nil {
		panic("policies: canonical JSON did not parse: " + err.Error())
	}
	return c
}

// Normalize returns a document with the same meaning in one canonical shape:
// every statement split into one action and one resource (or principal) per
// statement where the element is a positive list, action names in lower case
// (IAM matches them case-insensitively), Sids dropped, lists sorted and
// deduplicated, and duplicate statements removed. Two documents are
// Equivalent when their normalized forms are equal.
func (d *Document) Normalize() *Document {
	n := &Document{Version: d.Version}
	if n.Version == "" {
		n.Version = "2008-10-17"
	}
	type keyed struct {
		key string
		st  Statement
	}
	var all []keyed
	seen := map[string]bool{}
	add := func(s Statement) {
		key := string(s.appendJSON(nil))
		if !seen[key] {
			seen[key] = true
			all = append(all, keyed{key, s})
		}
	}
	for _, s := range d.Statements {
		base := Statement{
			Effect:       s.Effect,
			Principal:    normalizePrincipal(s.Principal),
			NotPrincipal: normalizePrincipal(s.NotPrincipal),
			NotAction:    normalizeValues(lowerAll(s.NotAction)),
			NotResource:  normalizeValues(s.NotResource),
			Condition:    normalizeCondition(s.Condition),
		}
		actions := []string{""}
		if s.Action.Present() {
			actions = normalizeValues(lowerAll(s.Action)).List
		}
		resources := []string{""}
		if s.Resource.Present() {
			resources = normalizeValues(s.Resource).List
		}
		for _, a := range actions {
			for _, r := range resources {
				st := base
				if s.Action.Present() {
					st.Action = Values{List: []string{a}}
				}
				if s.Resource.Present() {
					st.Resource = Values{List: []string{r}}
				}
				add(st)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	n.Statements = make([]Statement, len(all))
	for i, k := range all {
		n.Statements[i] = k.st
	}
	return n
}

// Equivalent reports whether two documents grant the same permissions,
// ignoring statement order and splitting, white space, Sids, string-or-list
// forms, duplicates and the case of action names.
func Equivalent(a, b *Document) bool {
	if bytes.Equal(a.JSON(), b.JSON()) {
		return true
	}
	return bytes.Equal(a.Normalize().JSON(), b.Normalize().JSON())
}

func lowerAll(v Values) Values {
	if !v.Present() {
		return v
	}
	out := Values{List: make([]string, len(v.List))}
	for i, s := range v.List {
		out.List[i] = strings.ToLower(s)
	}
	return out
}

func normalizeValues(v Values) Values {
	if !v.Present() {
		return Values{}
	}
	list := slices.Clone(v.List)
	sort.Strings(list)
	return Values{List: slices.Compact(list)}
}

func normalizePrincipal(p *Principal) *Principal {
	if p == nil {
		return nil
	}
	if p.Any {
		return &Principal{Any: true}
	}
	out := &Principal{Entries: make(map[string]Values, len(p.Entries))}
	for k, v := range p.Entries {
		if slices.Contains(v.List, "*") && k == "AWS" {
			return &Principal{Any: true}
		}
		out.Entries[k] = normalizeValues(v)
	}
	return out
}

func normalizeCondition(c Condition) Condition {
	if len(c) == 0 {
		return nil
	}
	out := make(Condition, len(c))
	for op, keys := range c {
		m := make(map[string]Values, len(keys))
		for k, v := range keys {
			// Condition keys are case-insensitive in IAM; values are not.
			m[strings.ToLower(k)] = normalizeValues(v)
		}
		out[op] = m
	}
	return out
}

// JSON writes the principal element in canonical form.
func (p *Principal) JSON() []byte { return p.appendJSON(nil) }

// JSON writes the condition element in canonical form.
func (c Condition) JSON() []byte {
	s := Statement{Condition: c}
	b := s.appendJSON(nil)
	// {"Condition":{...}} -> {...}
	return b[len(`{"Condition":`) : len(b)-1]
}
