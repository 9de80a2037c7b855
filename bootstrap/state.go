package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/rdsgate/rdsgate/policies"
)

// Tags rdsgate puts on every role and managed policy it creates. Nothing
// without TagManaged is ever changed or deleted.
const (
	TagManaged      = "rdsgate:managed"
	TagManagedValue = "true"
	TagBase         = "rdsgate:base"
)

// ObservedPrincipal is a role or user as IAM holds it.
type ObservedPrincipal struct {
	Kind               policies.PrincipalKind
	Name, Path, ARN    string
	Tags               map[string]string
	Trust              *policies.Document
	MaxSessionDuration int
	Boundary           string
	// Inline holds every inline policy, rdsgate's and others'.
	Inline map[string]*policies.Document
	// Attached holds the ARNs of every attached managed policy.
	Attached []string
}

// Managed reports whether rdsgate created the principal.
func (p *ObservedPrincipal) Managed() bool { return p.Tags[TagManaged] == TagManagedValue }

// OtherInlineSize is the size of the inline policies that are not rdsgate's
// connect policy: they share the principal's inline budget.
func (p *ObservedPrincipal) OtherInlineSize() int {
	n := 0
	for name, d := range p.Inline {
		if !ownInline(name) {
			n += d.Size()
		}
	}
	return n
}

// Other is what the principal holds outside rdsgate's documents.
func (p *ObservedPrincipal) Other(policiesByARN map[string]*ObservedPolicy) policies.OtherPolicies {
	o := policies.OtherPolicies{InlineSize: p.OtherInlineSize()}
	for _, name := range slices.Sorted(maps.Keys(p.Inline)) {
		if !ownInline(name) {
			o.Documents = append(o.Documents, p.Inline[name])
		}
	}
	for _, arn := range p.Attached {
		if op := policiesByARN[arn]; op != nil && op.Managed() && ownManaged(p.Name, op.Name) {
			continue
		}
		o.Attached++
	}
	return o
}

// ownInline reports whether an inline policy name is one of rdsgate's
// connect documents: the plan's, or a temporary one of an apply.
func ownInline(name string) bool {
	return name == policies.InlinePolicyName || policies.IsParkInline(name)
}

// ownManaged reports whether a managed policy name is one of rdsgate's
// connect documents for the principal.
func ownManaged(principal, name string) bool {
	_, slot := connectPolicySlot(principal, name)
	return slot || policies.IsParkManaged(principal, name)
}

// ObservedPolicy is a customer managed policy under rdsgate's path.
type ObservedPolicy struct {
	Name, Path, ARN string
	Tags            map[string]string
	DefaultVersion  string
	Document        *policies.Document
	Attachments     int
}

// Managed reports whether rdsgate created the policy.
func (p *ObservedPolicy) Managed() bool { return p.Tags[TagManaged] == TagManagedValue }

// Observed is what IAM holds for a plan's principals.
type Observed struct {
	// Plan is AWS's state in the shape of a plan: the base principal, the
	// shard roles rdsgate made for it, and their rdsgate documents that are
	// in effect (managed policies only when attached). Its databases are
	// named from the desired plan's index.
	Plan       *policies.Plan
	Principals map[string]*ObservedPrincipal // by name
	Policies   map[string]*ObservedPolicy    // rdsgate-path policies by name
	// Foreign lists roles and policies that have rdsgate's names but not its
	// tag: rdsgate never touches them.
	Foreign []string
	// Orphans are rdsgate's connect policies for these principals that are
	// not attached (an apply that stopped between create and attach).
	Orphans []*ObservedPolicy
}

// noBase says that the base principal does not exist and how to fix it.
func noBase(kind policies.PrincipalKind, name string) error {
	return fmt.Errorf("%w: the %s %q does not exist: rdsgate writes the proxy's permissions onto it but does not create it; "+
		"create it first (with Terraform, or `aws iam create-%s --%s-name %s ...`) or fix --base-role/--user. "+
		"If it was created moments ago, IAM may not show it yet (it is eventually consistent): run again in a minute",
		ErrNoBase, kind, name, kind, kind, name)
}

// decodeDocument parses a policy document as IAM returns it: URL-encoded.
func decodeDocument(s *string, what string) (*policies.Document, error) {
	raw := aws.ToString(s)
	if strings.HasPrefix(raw, "%7B") || strings.HasPrefix(raw, "%7b") {
		dec, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot decode the document IAM returned: %w", what, err)
		}
		raw = dec
	}
	d, err := policies.Parse([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return d, nil
}

func tagMap(tags []iamtypes.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// ReadPrincipal reads a role or user with its policies; nil when it does not
// exist.
func ReadPrincipal(ctx context.Context, api IAMAPI, kind policies.PrincipalKind, name string) (*ObservedPrincipal, error) {
	p := &ObservedPrincipal{Kind: kind, Name: name, Inline: map[string]*policies.Document{}}
	subject := fmt.Sprintf("%s %s", kind, name)
	var inlineNames []string
	if kind == policies.PrincipalUser {
		out, err := api.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(name)})
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, explain(err, "iam:GetUser", subject)
		}
		u := out.User
		p.Path, p.ARN, p.Tags = aws.ToString(u.Path), aws.ToString(u.Arn), tagMap(u.Tags)
		if u.PermissionsBoundary != nil {
			p.Boundary = aws.ToString(u.PermissionsBoundary.PermissionsBoundaryArn)
		}
		pages := iam.NewListUserPoliciesPaginator(api, &iam.ListUserPoliciesInput{UserName: aws.String(name)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, explain(err, "iam:ListUserPolicies", subject)
			}
			inlineNames = append(inlineNames, page.PolicyNames...)
		}
		for _, pn := range inlineNames {
			out, err := api.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String(pn)})
			if err != nil {
				return nil, explain(err, "iam:GetUserPolicy", subject+" policy "+pn)
			}
			if p.Inline[pn], err = decodeDocument(out.PolicyDocument, subject+" policy "+pn); err != nil {
				return nil, err
			}
		}
		attached := iam.NewListAttachedUserPoliciesPaginator(api, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(name)})
		for attached.HasMorePages() {
			page, err := attached.NextPage(ctx)
			if err != nil {
				return nil, explain(err, "iam:ListAttachedUserPolicies", subject)
			}
			for _, a := range page.AttachedPolicies {
				p.Attached = append(p.Attached, aws.ToString(a.PolicyArn))
			}
		}
		return p, nil
	}
	out, err := api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, explain(err, "iam:GetRole", subject)
	}
	r := out.Role
	p.Path, p.ARN, p.Tags = aws.ToString(r.Path), aws.ToString(r.Arn), tagMap(r.Tags)
	p.MaxSessionDuration = int(aws.ToInt32(r.MaxSessionDuration))
	if r.PermissionsBoundary != nil {
		p.Boundary = aws.ToString(r.PermissionsBoundary.PermissionsBoundaryArn)
	}
	if r.AssumeRolePolicyDocument != nil {
		if p.Trust, err = decodeDocument(r.AssumeRolePolicyDocument, subject+" trust policy"); err != nil {
			return nil, err
		}
	}
	pages := iam.NewListRolePoliciesPaginator(api, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, explain(err, "iam:ListRolePolicies", subject)
		}
		inlineNames = append(inlineNames, page.PolicyNames...)
	}
	for _, pn := range inlineNames {
		out, err := api.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(pn)})
		if err != nil {
			return nil, explain(err, "iam:GetRolePolicy", subject+" policy "+pn)
		}
		if p.Inline[pn], err = decodeDocument(out.PolicyDocument, subject+" policy "+pn); err != nil {
			return nil, err
		}
	}
	attached := iam.NewListAttachedRolePoliciesPaginator(api, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	for attached.HasMorePages() {
		page, err := attached.NextPage(ctx)
		if err != nil {
			return nil, explain(err, "iam:ListAttachedRolePolicies", subject)
		}
		for _, a := range page.AttachedPolicies {
			p.Attached = append(p.Attached, aws.ToString(a.PolicyArn))
		}
	}
	return p, nil
}

// readPolicyDocument fills in a policy's tags and default document.
func readPolicyDocument(ctx context.Context, api IAMAPI, p *ObservedPolicy) error {
	tags, err := api.ListPolicyTags(ctx, &iam.ListPolicyTagsInput{PolicyArn: aws.String(p.ARN)})
	if err != nil {
		return explain(err, "iam:ListPolicyTags", "policy "+p.ARN)
	}
	p.Tags = tagMap(tags.Tags)
	v, err := api.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(p.ARN), VersionId: aws.String(p.DefaultVersion)})
	if err != nil {
		return explain(err, "iam:GetPolicyVersion", "policy "+p.ARN)
	}
	p.Document, err = decodeDocument(v.PolicyVersion.Document, "policy "+p.ARN)
	return err
}

// connectPolicySlot returns n when name is <principal>-connect-NN.
func connectPolicySlot(principal, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, principal+"-connect-")
	if !ok || len(rest) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// ReadState reads what IAM holds for the desired plan's principals: the base
// principal, every shard role rdsgate made under the plan's shard path, and
// their rdsgate documents.
func ReadState(ctx context.Context, api IAMAPI, desired *policies.Plan) (*Observed, error) {
	obs := &Observed{Principals: map[string]*ObservedPrincipal{}, Policies: map[string]*ObservedPolicy{}}
	base, err := ReadPrincipal(ctx, api, desired.Base.Kind, desired.Base.Name)
	if err != nil {
		return nil, err
	}
	if base == nil {
		return nil, noBase(desired.Base.Kind, desired.Base.Name)
	}
	obs.Principals[base.Name] = base

	// Shard roles under the plan's path, and any desired shard role that
	// exists elsewhere (a name clash).
	var roleNames []string
	pages := iam.NewListRolesPaginator(api, &iam.ListRolesInput{PathPrefix: aws.String(desired.Settings.ShardRolePath)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, explain(err, "iam:ListRoles", "path "+desired.Settings.ShardRolePath)
		}
		for _, r := range page.Roles {
			roleNames = append(roleNames, aws.ToString(r.RoleName))
		}
	}
	for _, pp := range desired.Principals {
		if pp.Shard && !contains(roleNames, pp.Name) {
			roleNames = append(roleNames, pp.Name)
		}
	}
	sort.Strings(roleNames)
	for _, name := range roleNames {
		if name == base.Name {
			continue
		}
		r, err := ReadPrincipal(ctx, api, policies.PrincipalRole, name)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		if !r.Managed() || r.Tags[TagBase] != desired.Base.ARN {
			obs.Foreign = append(obs.Foreign, fmt.Sprintf("role %s (%s)", name, foreignReason(r.Tags, desired.Base.ARN)))
			continue
		}
		obs.Principals[name] = r
	}

	// Managed policies under rdsgate's path.
	listed := iam.NewListPoliciesPaginator(api, &iam.ListPoliciesInput{Scope: iamtypes.PolicyScopeTypeLocal, PathPrefix: aws.String(policies.ManagedPolicyPath)})
	for listed.HasMorePages() {
		page, err := listed.NextPage(ctx)
		if err != nil {
			return nil, explain(err, "iam:ListPolicies", "path "+policies.ManagedPolicyPath)
		}
		for _, p := range page.Policies {
			op := &ObservedPolicy{Name: aws.ToString(p.PolicyName), Path: aws.ToString(p.Path), ARN: aws.ToString(p.Arn),
				DefaultVersion: aws.ToString(p.DefaultVersionId), Attachments: int(aws.ToInt32(p.AttachmentCount))}
			obs.Policies[op.Name] = op
		}
	}
	ours := func(name string) (string, bool) {
		for pn := range obs.Principals {
			if ownManaged(pn, name) {
				return pn, true
			}
		}
		for _, pp := range desired.Principals {
			if ownManaged(pp.Name, name) {
				return pp.Name, true
			}
		}
		return "", false
	}
	for _, name := range slices.Sorted(maps.Keys(obs.Policies)) {
		p := obs.Policies[name]
		if _, ok := ours(name); !ok {
			continue
		}
		if err := readPolicyDocument(ctx, api, p); err != nil {
			return nil, err
		}
		if !p.Managed() {
			obs.Foreign = append(obs.Foreign, fmt.Sprintf("policy %s (%s)", p.ARN, foreignReason(p.Tags, "")))
		}
	}

	obs.Plan = obs.asPlan(desired)
	return obs, nil
}

func foreignReason(tags map[string]string, base string) string {
	switch {
	case tags[TagManaged] != TagManagedValue:
		return "no " + TagManaged + " tag"
	case base != "" && tags[TagBase] != base:
		return fmt.Sprintf("made by rdsgate for %s", tags[TagBase])
	}
	return "not rdsgate's"
}

// asPlan presents the observed state as a plan, so policies.Diff can compare
// it with the desired one.
func (obs *Observed) asPlan(desired *policies.Plan) *policies.Plan {
	names := map[string][]string{} // resource prefix -> database names
	for _, d := range desired.Databases {
		k := d.ResourcePrefix(desired.Partition, desired.AccountID)
		names[k] = append(names[k], d.Name)
	}
	databasesOf := func(doc *policies.Document) []string {
		var out []string
		for _, st := range doc.Statements {
			for _, r := range st.Resource.List {
				if i := strings.LastIndexByte(r, '/'); i > 0 {
					out = append(out, names[r[:i]]...)
				}
			}
		}
		sort.Strings(out)
		return compact(out)
	}
	plan := &policies.Plan{FormatVersion: policies.PlanFormatVersion, Partition: desired.Partition, AccountID: desired.AccountID,
		Base: desired.Base, Settings: desired.Settings}
	attachedTo := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(obs.Principals)) {
		op := obs.Principals[name]
		pp := policies.PlanPrincipal{Kind: op.Kind, Name: op.Name, Path: op.Path, ARN: op.ARN, Shard: op.Name != desired.Base.Name,
			InlinePolicies: []policies.PlanPolicy{}, ManagedPolicies: []policies.PlanPolicy{}}
		if pp.Shard {
			pp.TrustPolicy, pp.MaxSessionDuration = op.Trust, op.MaxSessionDuration
		}
		var all []string
		for _, name := range slices.Sorted(maps.Keys(op.Inline)) {
			if !ownInline(name) {
				continue
			}
			d := op.Inline[name]
			dbs := databasesOf(d)
			pp.InlinePolicies = append(pp.InlinePolicies, policies.PlanPolicy{Name: name, Document: d, Size: d.Size(), Databases: dbs})
			all = append(all, dbs...)
		}
		for _, arn := range op.Attached {
			for _, p := range obs.Policies {
				if p.ARN != arn || !p.Managed() || p.Document == nil {
					continue
				}
				if !ownManaged(op.Name, p.Name) {
					continue
				}
				attachedTo[p.Name] = true
				dbs := databasesOf(p.Document)
				pp.ManagedPolicies = append(pp.ManagedPolicies, policies.PlanPolicy{Name: p.Name, Path: p.Path, ARN: p.ARN, Document: p.Document, Size: p.Document.Size(), Databases: dbs})
				all = append(all, dbs...)
			}
		}
		sort.Slice(pp.ManagedPolicies, func(i, j int) bool { return pp.ManagedPolicies[i].Name < pp.ManagedPolicies[j].Name })
		sort.Strings(all)
		pp.Databases = compact(all)
		if pp.Databases == nil {
			pp.Databases = []string{}
		}
		if pp.Shard {
			plan.Principals = append(plan.Principals, pp)
		} else {
			plan.Principals = append([]policies.PlanPrincipal{pp}, plan.Principals...)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(obs.Policies)) {
		p := obs.Policies[name]
		if p.Document != nil && p.Managed() && !attachedTo[name] {
			obs.Orphans = append(obs.Orphans, p)
		}
	}
	return plan
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func compact(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
