package policies

import (
	"fmt"
	"regexp"
	"slices"
)

// TrustSpec is a role's trust relationship as rdsgate declares it: which
// roles or users (by ARN, or account root) and which AWS services may assume
// the role, and the external id the callers must give.
type TrustSpec struct {
	// Sid names the statement (roles rdsgate adds trust to keep it apart
	// from the role's other statements); empty for roles rdsgate owns.
	Sid        string
	RoleARNs   []string
	Services   []string
	ExternalID string
}

var (
	sidRe        = regexp.MustCompile(`^[A-Za-z0-9]+$`)
	servicePrinc = regexp.MustCompile(`^[a-z0-9.-]+\.amazonaws\.com(\.cn)?$`)
	externalIDRe = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
)

// Validate checks the spec and names the field that is wrong.
func (t TrustSpec) Validate() error {
	if len(t.RoleARNs) == 0 && len(t.Services) == 0 {
		return &FieldError{Field: "trusted_role_arns", Reason: "nobody could assume the role: give trusted role ARNs or trusted services"}
	}
	if t.Sid != "" && !sidRe.MatchString(t.Sid) {
		return &FieldError{Field: "sid", Reason: fmt.Sprintf("%q may only hold letters and digits (IAM's rule for statement ids)", t.Sid)}
	}
	for _, a := range t.RoleARNs {
		if IsRootARN(a) {
			continue
		}
		if n, err := ParseIAMARN(a); err != nil || (n.Type != "role" && n.Type != "user") {
			if err == nil {
				err = fmt.Errorf("a %s cannot assume a role", n.Type)
			}
			return &FieldError{Field: "trusted_role_arns", Reason: fmt.Sprintf("%q: %v (give arn:aws:iam::123456789012:role/NAME, a user ARN, or arn:aws:iam::123456789012:root)", a, err)}
		}
	}
	for _, s := range t.Services {
		if !servicePrinc.MatchString(s) {
			return &FieldError{Field: "trusted_services", Reason: fmt.Sprintf("%q is not a service principal such as ec2.amazonaws.com or ecs-tasks.amazonaws.com", s)}
		}
	}
	if t.ExternalID != "" && (len(t.ExternalID) < 2 || len(t.ExternalID) > 1224 || !externalIDRe.MatchString(t.ExternalID)) {
		return &FieldError{Field: "external_id", Reason: "an external id is 2 to 1,224 characters of letters, digits and +=,.@:/-"}
	}
	return nil
}

// FieldError is a problem with one named input field; adapters (the CLI
// and the Terraform provider) point at the field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Statements returns the trust statements of the spec: one for the trusted
// principals (with the external id condition) and one for services, which
// cannot pass an external id.
func (t TrustSpec) Statements() []Statement {
	var out []Statement
	if len(t.RoleARNs) > 0 {
		st := Statement{
			Sid:       t.Sid,
			Effect:    Allow,
			Principal: &Principal{Entries: map[string]Values{"AWS": sortedValues(t.RoleARNs)}},
			Action:    One(assumeAction),
		}
		if t.ExternalID != "" {
			st.Condition = Condition{"StringEquals": {"sts:ExternalId": One(t.ExternalID)}}
		}
		out = append(out, st)
	}
	if len(t.Services) > 0 {
		sid := ""
		if t.Sid != "" {
			sid = t.Sid + "Services"
		}
		out = append(out, Statement{
			Sid:       sid,
			Effect:    Allow,
			Principal: &Principal{Entries: map[string]Values{"Service": sortedValues(t.Services)}},
			Action:    One(assumeAction),
		})
	}
	return out
}

// Document is the trust policy of a role that trusts exactly the spec.
func (t TrustSpec) Document() *Document {
	return &Document{Version: PolicyVersion, Statements: t.Statements()}
}

func sortedValues(v []string) Values {
	s := slices.Clone(v)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) == 1 {
		return One(s[0])
	}
	return List(s...)
}

// TrustSpecOf reads a trust policy back into a spec: what import and drift
// need. ok is false when the document holds anything a spec cannot say
// (other actions, conditions, denies, federated principals), so a caller
// knows to show the document rather than pretend it matches.
func TrustSpecOf(d *Document) (spec TrustSpec, ok bool) {
	ok = true
	for _, st := range d.Statements {
		if st.Effect != Allow || st.Principal == nil || st.Principal.Any || st.NotPrincipal != nil ||
			st.NotAction.Present() || st.Resource.Present() || st.NotResource.Present() ||
			len(st.Action.List) != 1 || st.Action.List[0] != assumeAction {
			ok = false
			continue
		}
		ext := ""
		switch {
		case len(st.Condition) == 0:
		case len(st.Condition) == 1 && len(st.Condition["StringEquals"]) == 1 && len(st.Condition["StringEquals"]["sts:ExternalId"].List) == 1:
			ext = st.Condition["StringEquals"]["sts:ExternalId"].List[0]
		default:
			ok = false
			continue
		}
		for typ, vals := range st.Principal.Entries {
			switch typ {
			case "AWS":
				if spec.ExternalID != "" && ext != spec.ExternalID {
					ok = false
				}
				if ext != "" {
					spec.ExternalID = ext
				}
				spec.RoleARNs = append(spec.RoleARNs, vals.List...)
			case "Service":
				if ext != "" {
					ok = false
				}
				spec.Services = append(spec.Services, vals.List...)
			default:
				ok = false
			}
		}
	}
	slices.Sort(spec.RoleARNs)
	spec.RoleARNs = slices.Compact(spec.RoleARNs)
	slices.Sort(spec.Services)
	spec.Services = slices.Compact(spec.Services)
	return spec, ok
}

// WithStatements returns d with the statements named sid (and sid+"Services")
// replaced by add: how rdsgate adds its trust to a role it does not own
// without touching the role's other statements.
func WithStatements(d *Document, sid string, add []Statement) *Document {
	out := &Document{Version: d.Version, ID: d.ID}
	if out.Version == "" {
		out.Version = PolicyVersion
	}
	for _, st := range d.Statements {
		if st.Sid == sid || st.Sid == sid+"Services" {
			continue
		}
		out.Statements = append(out.Statements, st)
	}
	out.Statements = append(out.Statements, add...)
	return out
}

// StatementsWithSid returns the statements of d that rdsgate added under sid.
func StatementsWithSid(d *Document, sid string) []Statement {
	var out []Statement
	for _, st := range d.Statements {
		if st.Sid == sid || st.Sid == sid+"Services" {
			out = append(out, st)
		}
	}
	return out
}

// IsRootARN reports whether an ARN names an account's root (any principal of
// that account the account's own policies allow).
func IsRootARN(arn string) bool {
	a, err := ParseARN(arn)
	return err == nil && a.Service == "iam" && a.Resource == "root"
}
