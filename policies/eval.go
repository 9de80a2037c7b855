package policies

import (
	"slices"
	"sort"
	"strings"
)

// Decision is the outcome of evaluating policies for one request.
type Decision int

// Decisions, in IAM's order of precedence: an explicit deny wins over an
// allow, and nothing allowed is denied implicitly.
const (
	ImplicitDeny Decision = iota
	Allowed
	ExplicitDeny
)

func (d Decision) String() string {
	return [...]string{"implicit deny", "allowed", "explicit deny"}[d]
}

// Request is what a policy is evaluated against.
type Request struct {
	Action   string
	Resource string // empty for trust policies
	// Principal is the caller's ARN, matched against Principal elements.
	Principal string
	// Context holds condition keys (case-insensitive) and their values.
	Context map[string]string
}

// Evaluate applies IAM's evaluation logic within one set of documents. It is
// deliberately pessimistic where it cannot know the answer: a condition it
// cannot evaluate makes an Allow not apply and a Deny apply, so a check built
// on it never claims access that AWS might refuse.
func Evaluate(docs []*Document, req Request) Decision {
	allowed := false
	for _, d := range docs {
		if d == nil {
			continue
		}
		for i := range d.Statements {
			st := &d.Statements[i]
			m := st.matches(req)
			switch {
			case st.Effect == Deny && m != matchNo:
				return ExplicitDeny
			case st.Effect == Allow && m == matchYes:
				allowed = true
			}
		}
	}
	if allowed {
		return Allowed
	}
	return ImplicitDeny
}

type match int

const (
	matchNo match = iota
	matchYes
	matchUnknown
)

func (s *Statement) matches(req Request) match {
	switch {
	case s.Action.Present() && !anyMatch(s.Action.List, req.Action, true):
		return matchNo
	case s.NotAction.Present() && anyMatch(s.NotAction.List, req.Action, true):
		return matchNo
	case s.Resource.Present() && !anyMatch(s.Resource.List, req.Resource, false):
		return matchNo
	case s.NotResource.Present() && anyMatch(s.NotResource.List, req.Resource, false):
		return matchNo
	case s.Principal != nil && !s.Principal.matches(req.Principal):
		return matchNo
	case s.NotPrincipal != nil && s.NotPrincipal.matches(req.Principal):
		return matchNo
	}
	return s.Condition.evaluate(req.Context)
}

func anyMatch(patterns []string, value string, fold bool) bool {
	if fold {
		value = strings.ToLower(value)
	}
	for _, p := range patterns {
		if fold {
			p = strings.ToLower(p)
		}
		if MatchWildcard(p, value) {
			return true
		}
	}
	return false
}

// matches reports whether a principal ARN is named by a Principal element:
// "*", the ARN itself, its account (as 123456789012 or its root ARN), or a
// service name.
func (p *Principal) matches(principal string) bool {
	if p.Any {
		return true
	}
	account := ""
	if a, err := ParseARN(principal); err == nil {
		account = a.AccountID
	}
	for typ, v := range p.Entries {
		for _, want := range v.List {
			switch {
			case want == "*" && typ == "AWS":
				return true
			case want == principal:
				return true
			case typ == "AWS" && account != "" && (want == account || strings.HasSuffix(want, ":"+account+":root")):
				return true
			}
		}
	}
	return false
}

// evaluate checks a Condition block against the request context.
func (c Condition) evaluate(ctx map[string]string) match {
	result := matchYes
	for op, keys := range c {
		base, ifExists := strings.CutSuffix(op, "IfExists")
		for key, want := range keys {
			got, present := lookupFold(ctx, key)
			if !present {
				switch {
				case ifExists:
					continue
				case strings.Contains(base, "Not"):
					continue // negated operators hold when the key is absent
				default:
					return matchNo
				}
			}
			ok, known := compare(base, got, want.List)
			switch {
			case !known:
				result = matchUnknown
			case !ok:
				return matchNo
			}
		}
	}
	return result
}

func lookupFold(ctx map[string]string, key string) (string, bool) {
	if v, ok := ctx[key]; ok {
		return v, true
	}
	for k, v := range ctx {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func compare(op, got string, want []string) (ok, known bool) {
	some := func(f func(string) bool) bool { return slices.ContainsFunc(want, f) }
	switch op {
	case "StringEquals", "ArnEquals":
		return slices.Contains(want, got), true
	case "StringNotEquals", "ArnNotEquals":
		return !slices.Contains(want, got), true
	case "StringEqualsIgnoreCase":
		return some(func(w string) bool { return strings.EqualFold(w, got) }), true
	case "StringNotEqualsIgnoreCase":
		return !some(func(w string) bool { return strings.EqualFold(w, got) }), true
	case "StringLike", "ArnLike":
		return some(func(w string) bool { return MatchWildcard(w, got) }), true
	case "StringNotLike", "ArnNotLike":
		return !some(func(w string) bool { return MatchWildcard(w, got) }), true
	case "Bool":
		return some(func(w string) bool { return strings.EqualFold(w, got) }), true
	}
	return false, false
}

// PrincipalPolicies are the policies IAM evaluates for one principal.
type PrincipalPolicies struct {
	ARN      string
	Identity []*Document // inline and attached managed policies
	Boundary *Document   // permissions boundary, nil when none
	Trust    *Document   // roles only
}

// Allows reports whether the principal may perform a request on its own:
// allowed by an identity policy and not outside its boundary.
func (pp *PrincipalPolicies) Allows(req Request) bool {
	if Evaluate(pp.Identity, req) != Allowed {
		return false
	}
	return pp.Boundary == nil || Evaluate([]*Document{pp.Boundary}, req) == Allowed
}

// IAMState is a set of principals and their policies: what AWS holds, or
// what a plan says it will hold.
type IAMState struct {
	Principals map[string]*PrincipalPolicies // by ARN
}

// CanAssume reports whether from may assume the role to: from's identity
// policies allow sts:AssumeRole on it (within its boundary) and the role's
// trust policy names from. Both are needed when the trust policy names a
// role, which is how rdsgate writes them.
func (s *IAMState) CanAssume(from, to string, ctx map[string]string) bool {
	src, dst := s.Principals[from], s.Principals[to]
	if src == nil || dst == nil || dst.Trust == nil {
		return false
	}
	if !src.Allows(Request{Action: assumeAction, Resource: to, Context: ctx}) {
		return false
	}
	return Evaluate([]*Document{dst.Trust}, Request{Action: assumeAction, Principal: from, Context: ctx}) == Allowed
}

// Reachable lists the principals from reaches in at most hops role
// assumptions, itself first, then by distance and ARN.
func (s *IAMState) Reachable(from string, hops int, ctx map[string]string) []string {
	seen := map[string]bool{from: true}
	out := []string{from}
	frontier := []string{from}
	targets := make([]string, 0, len(s.Principals))
	for arn := range s.Principals {
		targets = append(targets, arn)
	}
	sort.Strings(targets)
	for h := 0; h < hops && len(frontier) > 0; h++ {
		var next []string
		for _, f := range frontier {
			for _, t := range targets {
				if !seen[t] && s.CanAssume(f, t, ctx) {
					seen[t] = true
					next = append(next, t)
				}
			}
		}
		out = append(out, next...)
		frontier = next
	}
	return out
}

// ConnectVia returns the principals reachable from from that may
// rds-db:connect to resource.
func (s *IAMState) ConnectVia(from, resource string, hops int, ctx map[string]string) []string {
	var via []string
	for _, arn := range s.Reachable(from, hops, ctx) {
		if s.Principals[arn].Allows(Request{Action: connectAction, Resource: resource}) {
			via = append(via, arn)
		}
	}
	return via
}

// State returns the IAM state the plan describes for its own principals.
func (pl *Plan) State() *IAMState {
	s := &IAMState{Principals: map[string]*PrincipalPolicies{}}
	for _, pp := range pl.Principals {
		pol := &PrincipalPolicies{ARN: pp.ARN, Trust: pp.TrustPolicy}
		for _, d := range pp.InlinePolicies {
			pol.Identity = append(pol.Identity, d.Document)
		}
		for _, d := range pp.ManagedPolicies {
			pol.Identity = append(pol.Identity, d.Document)
		}
		s.Principals[pp.ARN] = pol
	}
	if _, ok := s.Principals[pl.Base.ARN]; !ok && pl.Base.ARN != "" {
		s.Principals[pl.Base.ARN] = &PrincipalPolicies{ARN: pl.Base.ARN}
	}
	return s
}
