package bootstrap

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rdsgate/rdsgate/policies"
)

// Change is one write create-iam would make, or a note that none is needed.
type Change struct {
	// Action is create, update or unchanged.
	Action  string
	What    string
	Current *policies.Document
	Desired *policies.Document
	apply   func(context.Context) error
}

// Diff lists the permissions the change adds and removes.
func (c Change) Diff() (added, removed []string) { return PermissionDiff(c.Current, c.Desired) }

// PermissionDiff lists what want allows that cur does not, and the reverse,
// one action on one resource per line: compared by meaning (order, white
// space, string-or-list and the case of actions do not count), shown as the
// documents spell them.
func PermissionDiff(cur, want *policies.Document) (added, removed []string) {
	atoms := func(d *policies.Document) map[string]string {
		m := map[string]string{}
		if d == nil {
			return m
		}
		for _, st := range d.Statements {
			principal := ""
			if st.Principal != nil {
				principal = " for " + string(st.Principal.JSON())
			}
			resources := append(append([]string{}, st.Resource.List...), prefixAll("not ", st.NotResource.List)...)
			if len(resources) == 0 {
				resources = []string{""}
			}
			for _, a := range append(append([]string{}, st.Action.List...), prefixAll("not ", st.NotAction.List)...) {
				for _, r := range resources {
					cond := ""
					if st.Condition != nil {
						cond = " when " + string(st.Condition.JSON())
					}
					on := ""
					if r != "" {
						on = " on " + r
					}
					show := fmt.Sprintf("%s %s%s%s%s", st.Effect, a, on, principal, cond)
					m[strings.ToLower(string(st.Effect)+" "+a)+on+principal+cond] = show
				}
			}
		}
		return m
	}
	c, w := atoms(cur), atoms(want)
	for k, show := range w {
		if _, ok := c[k]; !ok {
			added = append(added, show)
		}
	}
	for k, show := range c {
		if _, ok := w[k]; !ok {
			removed = append(removed, show)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func prefixAll(p string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = p + s
	}
	return out
}

// CallerAccount returns the account of the credentials in use.
func CallerAccount(ctx context.Context, c *Clients) (string, string, error) {
	out, err := c.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", "", explain(err, "sts:GetCallerIdentity", "the credentials in use")
	}
	return aws.ToString(out.Account), aws.ToString(out.Arn), nil
}

// PlanBootstrap works out what create-iam must write for the bootstrap
// policy: the permissions boundary (automatic mode), the boundary on the
// principal, then the inline policy, in that order so the proxy is never
// able to write its own policy without the boundary in place.
func PlanBootstrap(ctx context.Context, c *Clients, bp *policies.BootstrapPolicy) ([]Change, error) {
	o := bp.Options
	if o.Name == "" {
		return nil, fmt.Errorf("%w: create-iam attaches the policy to a principal: give --role NAME or --user NAME", policies.ErrInvalidInput)
	}
	if o.AccountID == "" || o.AccountID == "*" {
		return nil, fmt.Errorf("%w: the bootstrap policy needs the account id", policies.ErrInvalidInput)
	}
	c.UseIAMRegion(o.Partition)
	p, err := ReadPrincipal(ctx, c.IAM, o.Kind, o.Name)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("the %s %q does not exist in account %s: create it first (rdsgate attaches its permissions to the proxy's existing principal)", o.Kind, o.Name, o.AccountID)
	}
	ex := &executor{api: c.IAM, desired: &policies.Plan{Base: policies.PrincipalRef{Kind: o.Kind, Name: o.Name, ARN: bp.PrincipalARN},
		Settings: policies.PlanSettings{PolicySize: policies.QuotaValue("PolicySizeQuota"), InlineSize: policies.QuotaValue("RolePolicySizeQuota")}}}
	var changes []Change
	if bp.Boundary != nil {
		ch := Change{What: fmt.Sprintf("managed policy %s (permissions boundary)", bp.BoundaryARN), Desired: bp.Boundary}
		cur := &ObservedPolicy{ARN: bp.BoundaryARN}
		out, err := c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(bp.BoundaryARN)})
		switch {
		case isNotFound(err):
			ch.Action = "create"
		case err != nil:
			return nil, explain(err, "iam:GetPolicy", ch.What)
		default:
			cur.DefaultVersion = aws.ToString(out.Policy.DefaultVersionId)
			if err := readPolicyDocument(ctx, c.IAM, cur); err != nil {
				return nil, err
			}
			if !cur.Managed() {
				return nil, fmt.Errorf("%s exists without the %s tag; rdsgate does not change policies it did not create: delete or rename it", ch.What, TagManaged)
			}
			ch.Current = cur.Document
			ch.Action = "update"
			if policies.Equivalent(cur.Document, bp.Boundary) {
				ch.Action = "unchanged"
			}
		}
		ch.apply = func(ctx context.Context) error {
			return ex.ensurePolicy(ctx, policies.ManagedPolicyPath, bp.BoundaryName, bp.BoundaryARN, bp.Boundary, bp.PrincipalARN)
		}
		changes = append(changes, ch)

		set := Change{What: fmt.Sprintf("permissions boundary of %s %s", o.Kind, o.Name), Action: "unchanged"}
		switch p.Boundary {
		case bp.BoundaryARN:
		case "":
			set.Action = "create"
		default:
			return nil, fmt.Errorf("%s %s already has the permissions boundary %s; rdsgate does not replace boundaries it did not set: "+
				"remove it, or use --manual (no IAM write permission, no boundary needed)", o.Kind, o.Name, p.Boundary)
		}
		set.apply = func(ctx context.Context) error {
			if o.Kind == policies.PrincipalUser {
				_, err := c.IAM.PutUserPermissionsBoundary(ctx, &iam.PutUserPermissionsBoundaryInput{UserName: aws.String(o.Name), PermissionsBoundary: aws.String(bp.BoundaryARN)})
				return explain(err, "iam:PutUserPermissionsBoundary", set.What)
			}
			_, err := c.IAM.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String(o.Name), PermissionsBoundary: aws.String(bp.BoundaryARN)})
			return explain(err, "iam:PutRolePermissionsBoundary", set.What)
		}
		changes = append(changes, set)
	}
	inline := Change{What: fmt.Sprintf("inline policy %s of %s %s", policies.BootstrapPolicyName, o.Kind, o.Name), Desired: bp.Policy, Action: "create"}
	if cur := p.Inline[policies.BootstrapPolicyName]; cur != nil {
		inline.Current, inline.Action = cur, "update"
		if policies.Equivalent(cur, bp.Policy) {
			inline.Action = "unchanged"
		}
	}
	limit := policies.QuotaValue("RolePolicySizeQuota")
	if o.Kind == policies.PrincipalUser {
		limit = policies.QuotaValue("UserPolicySizeQuota")
	}
	if inline.Action != "unchanged" {
		other := 0
		for name, d := range p.Inline {
			if name != policies.BootstrapPolicyName {
				other += d.Size()
			}
		}
		if other+bp.Policy.Size() > limit {
			return nil, fmt.Errorf("%s %s's other inline policies use %d characters; with the bootstrap policy's %d that is over IAM's %d: "+
				"move some of them into managed policies first", o.Kind, o.Name, other, bp.Policy.Size(), limit)
		}
	}
	inline.apply = func(ctx context.Context) error {
		return ex.putInline(ctx, o.Kind, o.Name, policies.BootstrapPolicyName, bp.Policy)
	}
	return append(changes, inline), nil
}

// ApplyChanges makes the changes PlanBootstrap found, in order.
func ApplyChanges(ctx context.Context, changes []Change) error {
	for _, ch := range changes {
		if ch.Action == "unchanged" {
			continue
		}
		if err := ch.apply(ctx); err != nil {
			return fmt.Errorf("%s %s: %w", ch.Action, ch.What, err)
		}
	}
	return nil
}

// BootstrapState is what IAM holds of the bootstrap policy: the proxy's
// inline policy, the boundary set on it, and the boundary policy's document.
type BootstrapState struct {
	Exists      bool // the principal exists
	Policy      *policies.Document
	BoundaryARN string
	Boundary    *policies.Document
}

// ReadBootstrap reads what IAM holds for a bootstrap policy (the Terraform
// provider's drift check).
func ReadBootstrap(ctx context.Context, c *Clients, bp *policies.BootstrapPolicy) (*BootstrapState, error) {
	o := bp.Options
	c.UseIAMRegion(o.Partition)
	p, err := ReadPrincipal(ctx, c.IAM, o.Kind, o.Name)
	if err != nil || p == nil {
		return &BootstrapState{}, err
	}
	st := &BootstrapState{Exists: true, Policy: p.Inline[policies.BootstrapPolicyName], BoundaryARN: p.Boundary}
	if bp.BoundaryARN != "" && p.Boundary == bp.BoundaryARN {
		cur := &ObservedPolicy{ARN: bp.BoundaryARN}
		out, err := c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(bp.BoundaryARN)})
		switch {
		case isNotFound(err):
		case err != nil:
			return nil, explain(err, "iam:GetPolicy", bp.BoundaryARN)
		default:
			cur.DefaultVersion = aws.ToString(out.Policy.DefaultVersionId)
			if err := readPolicyDocument(ctx, c.IAM, cur); err != nil {
				return nil, err
			}
			st.Boundary = cur.Document
		}
	}
	return st, nil
}

// RemoveBootstrap undoes create-iam: the inline policy first (so the proxy
// loses its IAM write permission before anything else), then the boundary
// on the principal when it is rdsgate's, then the boundary policy. Running
// it again writes nothing.
func RemoveBootstrap(ctx context.Context, c *Clients, bp *policies.BootstrapPolicy) error {
	o := bp.Options
	c.UseIAMRegion(o.Partition)
	p, err := ReadPrincipal(ctx, c.IAM, o.Kind, o.Name)
	if err != nil {
		return err
	}
	ex := &executor{api: c.IAM}
	if p != nil {
		if _, ok := p.Inline[policies.BootstrapPolicyName]; ok {
			if err := ex.deleteInline(ctx, o.Kind, o.Name, policies.BootstrapPolicyName); err != nil {
				return err
			}
		}
		if bp.BoundaryARN != "" && p.Boundary == bp.BoundaryARN {
			subject := fmt.Sprintf("permissions boundary of %s %s", o.Kind, o.Name)
			if o.Kind == policies.PrincipalUser {
				_, err = c.IAM.DeleteUserPermissionsBoundary(ctx, &iam.DeleteUserPermissionsBoundaryInput{UserName: aws.String(o.Name)})
				err = explain(err, "iam:DeleteUserPermissionsBoundary", subject)
			} else {
				_, err = c.IAM.DeleteRolePermissionsBoundary(ctx, &iam.DeleteRolePermissionsBoundaryInput{RoleName: aws.String(o.Name)})
				err = explain(err, "iam:DeleteRolePermissionsBoundary", subject)
			}
			if err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	if bp.BoundaryARN != "" {
		return ex.deletePolicy(ctx, bp.BoundaryARN)
	}
	return nil
}

// OtherDocuments reads the documents of a principal's policies that are not
// rdsgate's (its connect documents, the bootstrap policy): its other inline
// policies as "inline NAME", its other attached managed policies as
// "managed ARN". A principal that does not exist has none.
func OtherDocuments(ctx context.Context, api IAMAPI, kind policies.PrincipalKind, name string) (map[string]*policies.Document, error) {
	p, err := ReadPrincipal(ctx, api, kind, name)
	if err != nil || p == nil {
		return nil, err
	}
	docs := map[string]*policies.Document{}
	for n, d := range p.Inline {
		if !ownInline(n) && n != policies.BootstrapPolicyName {
			docs["inline "+n] = d
		}
	}
	for _, arn := range p.Attached {
		if ownManagedARN(p.Name, arn) {
			continue
		}
		if docs["managed "+arn], err = readDefaultVersion(ctx, api, arn); err != nil {
			return nil, err
		}
	}
	return docs, nil
}

// FitBoundary checks the bootstrap policy's permissions boundary against
// what the principal holds: cuts lists the actions of its other policies
// that the boundary would take away once set. With keep, the returned
// policy's boundary also allows them (it caps, so that grants nothing new);
// otherwise it is bp. Manual mode has no boundary and nothing to cut.
func FitBoundary(ctx context.Context, c *Clients, bp *policies.BootstrapPolicy, keep bool) (*policies.BootstrapPolicy, []policies.Cut, error) {
	if bp.Boundary == nil || bp.Options.Name == "" {
		return bp, nil, nil
	}
	c.UseIAMRegion(bp.Options.Partition)
	docs, err := OtherDocuments(ctx, c.IAM, bp.Options.Kind, bp.Options.Name)
	if err != nil {
		return nil, nil, err
	}
	cuts := policies.BoundaryCuts(bp.Boundary, docs)
	if !keep || len(cuts) == 0 {
		return bp, cuts, nil
	}
	o := bp.Options
	o.Keep = policies.KeepStatements(bp.Boundary, docs)
	kept, err := policies.NewBootstrapPolicy(o)
	if err != nil {
		return nil, nil, err
	}
	return kept, cuts, nil
}
