// Package iamcheck is an independent model of the part of IAM that decides
// whether the proxy can connect to a database: identity policies that allow
// rds-db:connect, and one hop of role chaining from the base principal to a
// role whose trust policy names it and which the base may sts:AssumeRole.
//
// It is written from AWS's documentation of policy evaluation, not from
// rdsgate's policies package, and imports the standard library alone, so a
// test that replays rdsgate's writes through it checks rdsgate against a
// second opinion rather than against itself. It also keeps IAM's size
// quotas, counted the way IAM counts them (characters, white space not
// counted).
package iamcheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Principal is a role or user with its identity and trust policies, each
// kept as the JSON text that was written.
type Principal struct {
	Kind  string // "role" or "user"
	Name  string
	ARN   string
	Trust string // roles: the trust policy
	// Boundary is the permissions boundary's document, "" when none: an
	// action must be allowed by it too (and not denied by it).
	Boundary string
	Inline   map[string]string // name -> document
	Managed  map[string]string // attached managed policies: ARN -> document
	// OtherInlineSize and OtherAttached are what policies outside the model
	// use of the principal's quotas.
	OtherInlineSize, OtherAttached int
}

// Quotas are the limits World enforces on every write.
type Quotas struct {
	InlineRole, InlineUser int // all inline policies of one principal together
	Managed                int // one managed policy document
	AttachedRole           int
	AttachedUser           int
}

// World is IAM as far as connecting goes.
type World struct {
	Base       string // ARN of the principal the proxy runs as
	ExternalID string // what the proxy passes when it assumes a role
	Principals map[string]*Principal
	Quotas     Quotas
	parsed     map[string][]statement // document text -> statements, shared by clones
	// requestKeys are the condition keys of the request being judged
	// (AllowsRequest); nil when they are unknown.
	requestKeys map[string]string
}

// New returns an empty world for a base principal.
func New(base, externalID string, q Quotas) *World {
	return &World{Base: base, ExternalID: externalID, Principals: map[string]*Principal{}, Quotas: q, parsed: map[string][]statement{}}
}

// Principal returns the principal with the ARN, creating it when missing.
func (w *World) Principal(kind, name, arn string) *Principal {
	if p := w.Principals[arn]; p != nil {
		return p
	}
	p := &Principal{Kind: kind, Name: name, ARN: arn, Inline: map[string]string{}, Managed: map[string]string{}}
	w.Principals[arn] = p
	return p
}

// Clone copies the world.
func (w *World) Clone() *World {
	c := &World{Base: w.Base, ExternalID: w.ExternalID, Principals: map[string]*Principal{}, Quotas: w.Quotas, parsed: w.parsed}
	for arn, p := range w.Principals {
		q := *p
		q.Inline, q.Managed = map[string]string{}, map[string]string{}
		for k, v := range p.Inline {
			q.Inline[k] = v
		}
		for k, v := range p.Managed {
			q.Managed[k] = v
		}
		c.Principals[arn] = &q
	}
	return c
}

// CheckQuotas reports the first quota the world breaks.
func (w *World) CheckQuotas() error {
	for _, arn := range slices.Sorted(maps.Keys(w.Principals)) {
		p := w.Principals[arn]
		inline, attached := w.Quotas.InlineRole, w.Quotas.AttachedRole
		if p.Kind == "user" {
			inline, attached = w.Quotas.InlineUser, w.Quotas.AttachedUser
		}
		total := p.OtherInlineSize
		for _, d := range p.Inline {
			total += Size(d)
		}
		if inline > 0 && total > inline {
			return fmt.Errorf("the inline policies of %s use %d characters, over the quota of %d", arn, total, inline)
		}
		if n := len(p.Managed) + p.OtherAttached; n > attached {
			return fmt.Errorf("%s has %d managed policies attached, over the quota of %d", arn, n, attached)
		}
		for m, d := range p.Managed {
			if w.Quotas.Managed > 0 && Size(d) > w.Quotas.Managed {
				return fmt.Errorf("managed policy %s is %d characters, over the quota of %d", m, Size(d), w.Quotas.Managed)
			}
		}
	}
	return nil
}

// Size counts a document's characters as IAM does: white space outside
// strings is not counted.
func Size(doc string) int {
	n, inString, escaped := 0, false, false
	for _, r := range doc {
		switch {
		case inString:
			n++
			switch {
			case escaped:
				escaped = false
			case r == '\\':
				escaped = true
			case r == '"':
				inString = false
			}
		case r == '"':
			n++
			inString = true
		case unicode.IsSpace(r):
		default:
			n++
		}
	}
	return n
}

// CanConnect reports whether the proxy can rds-db:connect to resource (an
// rds-db dbuser ARN for one concrete user) from the base principal, directly
// or through one role it assumes.
func (w *World) CanConnect(resource string) bool {
	return len(w.Missing([]string{resource})) == 0
}

// reachable lists the base principal and the roles it can assume.
func (w *World) reachable() []*Principal {
	base := w.Principals[w.Base]
	if base == nil {
		return nil
	}
	out := []*Principal{base}
	for _, arn := range slices.Sorted(maps.Keys(w.Principals)) {
		r := w.Principals[arn]
		if r.Kind == "role" && arn != w.Base && w.allows(base, "sts:AssumeRole", arn) && w.trusts(r) {
			out = append(out, r)
		}
	}
	return out
}

// Resources lists every rds-db:connect resource any reachable principal
// names in an Allow statement: the candidates for what CanConnect allows.
func (w *World) Resources() []string {
	set := map[string]bool{}
	for _, p := range w.reachable() {
		for _, d := range p.documents() {
			for _, st := range w.statements(d) {
				if st.effect == "Allow" && matchAny(st.action, "rds-db:connect", true) {
					for _, r := range st.resource {
						set[r] = true
					}
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Missing lists the requests in want that w does not allow. Principals whose
// policies only hold plain Allow statements (rdsgate's) are looked up in an
// index; any other is evaluated statement by statement.
func (w *World) Missing(want []string) []string {
	type index struct {
		exact    map[string]bool
		patterns []string
		slow     *Principal
	}
	var idx []index
	for _, p := range w.reachable() {
		ix := index{exact: map[string]bool{}}
		for _, d := range p.documents() {
			for _, st := range w.statements(d) {
				plain := st.effect == "Allow" && st.hasAction && st.hasResource && !st.hasNotResrc && len(st.condition) == 0
				if !plain {
					if st.effect == "Deny" || st.hasNotAction || st.hasNotResrc || len(st.condition) > 0 {
						ix.slow = p
					}
					continue
				}
				if !matchAny(st.action, "rds-db:connect", true) {
					continue
				}
				for _, r := range st.resource {
					if strings.ContainsAny(r, "*?") {
						ix.patterns = append(ix.patterns, r)
					} else {
						ix.exact[r] = true
					}
				}
			}
		}
		idx = append(idx, ix)
	}
	var out []string
	for _, r := range want {
		ok := false
		for _, ix := range idx {
			if ix.slow != nil {
				if w.allows(ix.slow, "rds-db:connect", r) {
					ok = true
					break
				}
				continue
			}
			if ix.exact[r] || matchAny(ix.patterns, r, false) {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, r)
		}
	}
	return out
}

func (p *Principal) documents() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p.Inline)) {
		out = append(out, p.Inline[k])
	}
	for _, k := range slices.Sorted(maps.Keys(p.Managed)) {
		out = append(out, p.Managed[k])
	}
	return out
}

// Trusts reports whether a role's trust policy lets caller assume it,
// passing externalID ("" for none).
func Trusts(trust, caller, externalID string) bool {
	w := New(caller, externalID, Quotas{})
	r := w.Principal("role", "target", "target")
	r.Trust = trust
	return w.trusts(r)
}

// trusts reports whether a role's trust policy lets the base assume it with
// the world's external id.
func (w *World) trusts(r *Principal) bool {
	allowed := false
	for _, st := range w.statements(r.Trust) {
		if !matchAny(st.action, "sts:AssumeRole", true) || !st.principalNames(w.Base) || !st.conditionHolds(map[string]string{"sts:externalid": w.ExternalID}) {
			continue
		}
		if st.effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

// Allows reports whether the principal with the ARN may perform action on
// resource by its own policies (identity policies within its boundary).
func (w *World) Allows(arn, action, resource string) bool {
	p := w.Principals[arn]
	return p != nil && w.allows(p, action, resource)
}

// Allows evaluates identity policy documents, and a permissions boundary
// unless it is "", for one request, as IAM does within one account.
func Allows(identity []string, boundary, action, resource string) bool {
	return AllowsRequest(identity, boundary, action, resource, nil)
}

// AllowsRequest is Allows for a request with condition keys (lower case:
// iam:policyarn): an Allow with a condition counts when the condition
// holds for them (StringEquals, StringLike, ArnEquals, ArnLike).
func AllowsRequest(identity []string, boundary, action, resource string, keys map[string]string) bool {
	w := New("", "", Quotas{})
	w.requestKeys = keys
	p := w.Principal("role", "r", "r")
	for i, d := range identity {
		p.Inline[fmt.Sprint(i)] = d
	}
	p.Boundary = boundary
	return w.allows(p, action, resource)
}

// allows is identity-policy evaluation: an explicit Deny wins, otherwise
// some Allow must match action and resource; with a permissions boundary,
// the boundary must allow it too (AWS: "the effective permissions are the
// intersection of the identity-based policy and the boundary").
func (w *World) allows(p *Principal, action, resource string) bool {
	if p.Boundary != "" && !w.allowedBy([]string{p.Boundary}, action, resource) {
		return false
	}
	return w.allowedBy(p.documents(), action, resource)
}

func (w *World) allowedBy(docs []string, action, resource string) bool {
	allowed := false
	for _, d := range docs {
		for _, st := range w.statements(d) {
			if !st.matches(action, resource) {
				continue
			}
			if st.effect == "Deny" {
				return false
			}
			// An Allow with a condition is not counted on, unless the
			// request's keys are known and satisfy it.
			if len(st.condition) == 0 || w.requestKeys != nil && st.conditionHolds(w.requestKeys) {
				allowed = true
			}
		}
	}
	return allowed
}

type statement struct {
	effect                   string
	action, notAction        []string
	resource, notResource    []string
	principal                map[string][]string
	principalAny             bool
	condition                map[string]map[string][]string
	hasAction, hasNotAction  bool
	hasResource, hasNotResrc bool
}

func (s statement) matches(action, resource string) bool {
	if s.hasAction && !matchAny(s.action, action, true) || s.hasNotAction && matchAny(s.notAction, action, true) {
		return false
	}
	return !(s.hasResource && !matchAny(s.resource, resource, false) || s.hasNotResrc && matchAny(s.notResource, resource, false))
}

func (s statement) principalNames(arn string) bool {
	if s.principalAny {
		return true
	}
	for _, v := range s.principal["AWS"] {
		if v == "*" || v == arn {
			return true
		}
		if parts := strings.Split(arn, ":"); len(parts) > 4 && (v == parts[4] || v == "arn:"+parts[1]+":iam::"+parts[4]+":root") {
			return true
		}
	}
	return false
}

// conditionHolds supports StringEquals (rdsgate's trust policies) and
// StringLike, ArnEquals and ArnLike (its bootstrap policy); anything else,
// or a key the request lacks, does not hold.
func (s statement) conditionHolds(ctx map[string]string) bool {
	for op, keys := range s.condition {
		for k, want := range keys {
			got, ok := ctx[strings.ToLower(k)]
			if !ok {
				return false
			}
			switch op {
			case "StringEquals", "ArnEquals":
				if !contains(want, got) {
					return false
				}
			case "StringLike", "ArnLike":
				if !matchAny(want, got, false) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// statements parses a policy document once; a document that does not
// parse allows nothing.
func (w *World) statements(doc string) []statement {
	if st, ok := w.parsed[doc]; ok {
		return st
	}
	st := parse(doc)
	w.parsed[doc] = st
	return st
}

func parse(doc string) []statement {
	var raw struct {
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(doc), &raw); err != nil || len(raw.Statement) == 0 {
		return nil
	}
	var list []map[string]json.RawMessage
	if raw.Statement[0] == '[' {
		if json.Unmarshal(raw.Statement, &list) != nil {
			return nil
		}
	} else {
		var one map[string]json.RawMessage
		if json.Unmarshal(raw.Statement, &one) != nil {
			return nil
		}
		list = append(list, one)
	}
	var out []statement
	for _, m := range list {
		var st statement
		_ = json.Unmarshal(m["Effect"], &st.effect)
		st.action, st.hasAction = strings1(m["Action"])
		st.notAction, st.hasNotAction = strings1(m["NotAction"])
		st.resource, st.hasResource = strings1(m["Resource"])
		st.notResource, st.hasNotResrc = strings1(m["NotResource"])
		if p, ok := m["Principal"]; ok {
			var star string
			if json.Unmarshal(p, &star) == nil && star == "*" {
				st.principalAny = true
			} else {
				var obj map[string]json.RawMessage
				_ = json.Unmarshal(p, &obj)
				st.principal = map[string][]string{}
				for k, v := range obj {
					st.principal[k], _ = strings1(v)
				}
			}
		}
		if c, ok := m["Condition"]; ok {
			var obj map[string]map[string]json.RawMessage
			_ = json.Unmarshal(c, &obj)
			st.condition = map[string]map[string][]string{}
			for op, keys := range obj {
				st.condition[op] = map[string][]string{}
				for k, v := range keys {
					st.condition[op][k], _ = strings1(v)
				}
			}
		}
		out = append(out, st)
	}
	return out
}

// strings1 decodes a string or a list of strings.
func strings1(raw json.RawMessage) ([]string, bool) {
	if raw == nil {
		return nil, false
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many, true
}

func matchAny(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p, s = strings.ToLower(p), strings.ToLower(s)
		}
		if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches IAM's wildcards, * for any run of characters (slashes too)
// and ? for one, by recursion on the pattern.
func glob(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := 0; i <= len(s); i++ {
				if glob(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}

// Concrete turns a resource pattern into concrete requests to test: a
// wildcard user stands for a user name no pattern names exactly.
func Concrete(resources []string) []string {
	var out []string
	for _, r := range resources {
		out = append(out, strings.ReplaceAll(strings.ReplaceAll(r, "*", "someuser"), "?", "x"))
	}
	sort.Strings(out)
	return out
}

// Gap is a request that was allowed before and is allowed after, but not
// at some moment in between.
type Gap struct {
	Request string
	After   string // the write after which it was not allowed
}

// Survivors lists the requests to keep allowed: every concrete form of a
// resource either world names that both worlds allow.
func Survivors(before, after *World) []string {
	cands := Concrete(append(before.Resources(), after.Resources()...))
	// One Missing call per world: it indexes the world's statements
	// once, where a CanConnect per candidate would index them again for
	// every one.
	lost := map[string]bool{}
	for _, r := range before.Missing(cands) {
		lost[r] = true
	}
	for _, r := range after.Missing(cands) {
		lost[r] = true
	}
	var out []string
	for _, r := range cands {
		if !lost[r] {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		last := 0
		for i := 1; i < len(out); i++ {
			if out[i] != out[last] {
				last++
				out[last] = out[i]
			}
		}
		out = out[:last+1]
	}
	return out
}
