package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/rdsgate/rdsgate/policies"
)

// RoleSpec is an IAM role rdsgate owns: the proxy's base role, or any role a
// user declares through rdsgate (the Terraform provider's
// rdsgate_access_role). It carries rdsgate's tag like the shard roles.
type RoleSpec struct {
	Name        string
	Path        string // "/" when empty
	Description string
	Trust       policies.TrustSpec
	// MaxSessionDuration in seconds (3,600 to 43,200; 3,600 when 0).
	MaxSessionDuration int
	// PermissionsBoundary is a policy ARN, or empty for none.
	PermissionsBoundary string
	// Tags are the user's; rdsgate adds its own.
	Tags map[string]string
}

// RoleState is a role as IAM holds it.
type RoleState struct {
	ARN, UniqueID, Name, Path, Description string
	Trust                                  *policies.Document
	MaxSessionDuration                     int
	PermissionsBoundary                    string
	// Tags without rdsgate's own.
	Tags    map[string]string
	Managed bool
}

// Validate checks a role spec before any call, naming the field.
func (r RoleSpec) Validate() error {
	if err := policies.ValidateIAMName("role", r.Name, 64); err != nil {
		return &policies.FieldError{Field: "name", Reason: err.Error()}
	}
	if r.Path != "" {
		if err := policies.ValidateIAMPath(r.Path); err != nil {
			return &policies.FieldError{Field: "path", Reason: err.Error()}
		}
	}
	if err := r.Trust.Validate(); err != nil {
		return err
	}
	if d := r.MaxSessionDuration; d != 0 && (d < 3600 || d > 43200) {
		return &policies.FieldError{Field: "max_session_duration", Reason: fmt.Sprintf("%d seconds is outside IAM's range of 3600 (1 hour) to 43200 (12 hours)", d)}
	}
	if b := r.PermissionsBoundary; b != "" {
		if n, err := policies.ParseIAMARN(b); err != nil || n.Type != "policy" {
			return &policies.FieldError{Field: "permissions_boundary", Reason: fmt.Sprintf("%q is not a managed policy ARN (arn:aws:iam::123456789012:policy/NAME)", b)}
		}
	}
	if n := policies.Size(r.Trust.Document().JSON()); n > policies.QuotaValue("AssumeRolePolicySizeQuota") {
		return &policies.FieldError{Field: "trusted_role_arns", Reason: fmt.Sprintf("the trust policy would be %d characters, over IAM's default quota of %d for trust policies; trust fewer principals (an account root ARN trusts every role of that account its own policies allow)", n, policies.QuotaValue("AssumeRolePolicySizeQuota"))}
	}
	for k := range r.Tags {
		if strings.HasPrefix(k, "rdsgate:") {
			return &policies.FieldError{Field: "tags", Reason: fmt.Sprintf("tag %q: keys starting with rdsgate: are rdsgate's own", k)}
		}
	}
	return nil
}

// ReadRole reads a role; nil when it does not exist.
func ReadRole(ctx context.Context, api IAMAPI, name string) (*RoleState, error) {
	out, err := api.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, explain(err, "iam:GetRole", "role "+name)
	}
	r := out.Role
	trust, err := decodeDocument(r.AssumeRolePolicyDocument, "role "+name+" trust policy")
	if err != nil {
		return nil, err
	}
	tags := tagMap(r.Tags)
	st := &RoleState{
		ARN: aws.ToString(r.Arn), UniqueID: aws.ToString(r.RoleId), Name: aws.ToString(r.RoleName), Path: aws.ToString(r.Path),
		Description: aws.ToString(r.Description), Trust: trust, MaxSessionDuration: int(aws.ToInt32(r.MaxSessionDuration)),
		Managed: tags[TagManaged] == TagManagedValue, Tags: map[string]string{},
	}
	if r.PermissionsBoundary != nil {
		st.PermissionsBoundary = aws.ToString(r.PermissionsBoundary.PermissionsBoundaryArn)
	}
	for k, v := range tags {
		if !strings.HasPrefix(k, "rdsgate:") {
			st.Tags[k] = v
		}
	}
	return st, nil
}

// EnsureRole creates the role, or brings an existing rdsgate role to the
// spec: trust policy (compared by meaning), session length, description,
// boundary and tags. A role without rdsgate's tag is refused: rdsgate does
// not take over roles it did not create.
func EnsureRole(ctx context.Context, api IAMAPI, spec RoleSpec) (*RoleState, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", policies.ErrInvalidInput, err)
	}
	if spec.Path == "" {
		spec.Path = "/"
	}
	if spec.MaxSessionDuration == 0 {
		spec.MaxSessionDuration = 3600
	}
	subject := "role " + spec.Name
	trust := spec.Trust.Document()
	cur, err := ReadRole(ctx, api, spec.Name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		in := &iam.CreateRoleInput{
			RoleName: aws.String(spec.Name), Path: aws.String(spec.Path), AssumeRolePolicyDocument: aws.String(string(trust.JSON())),
			MaxSessionDuration: aws.Int32(int32(spec.MaxSessionDuration)), Tags: roleTags(spec.Tags),
		}
		if spec.Description != "" {
			in.Description = aws.String(spec.Description)
		}
		if spec.PermissionsBoundary != "" {
			in.PermissionsBoundary = aws.String(spec.PermissionsBoundary)
		}
		existed, err := createRole(ctx, api, in)
		if err != nil {
			return nil, err
		}
		if !existed {
			st, err := ReadRole(ctx, api, spec.Name)
			if err == nil && st == nil {
				err = fmt.Errorf("%s was created, but IAM does not show it yet; run again in a minute", subject)
			}
			return st, err
		}
		if cur, err = ReadRole(ctx, api, spec.Name); err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, existsUnseen(subject)
		}
	}
	if !cur.Managed {
		return nil, fmt.Errorf("%s already exists without the %s tag, and rdsgate does not take over roles it did not create: "+
			"import it into Terraform state only if rdsgate made it, add trust to it with rdsgate_role_trust, or pick another name", subject, TagManaged)
	}
	if cur.Path != spec.Path {
		return nil, fmt.Errorf("%s exists with path %s, not %s; IAM cannot move a role, so it must be replaced", subject, cur.Path, spec.Path)
	}
	desc := spec.Description
	if err := convergeRole(ctx, api, subject, spec.Name, roleShape{cur.Trust, cur.MaxSessionDuration, cur.Description}, roleShape{trust, spec.MaxSessionDuration, desc}, &desc); err != nil {
		return nil, err
	}
	keepBootstrap := spec.PermissionsBoundary == "" && policies.IsBootstrapBoundary(cur.PermissionsBoundary, spec.Name)
	if cur.PermissionsBoundary != spec.PermissionsBoundary && !keepBootstrap {
		if spec.PermissionsBoundary == "" {
			if _, err := api.DeleteRolePermissionsBoundary(ctx, &iam.DeleteRolePermissionsBoundaryInput{RoleName: aws.String(spec.Name)}); err != nil && !isNotFound(err) {
				return nil, explain(err, "iam:DeleteRolePermissionsBoundary", subject)
			}
		} else if _, err := api.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String(spec.Name), PermissionsBoundary: aws.String(spec.PermissionsBoundary)}); err != nil {
			return nil, explain(err, "iam:PutRolePermissionsBoundary", subject)
		}
	}
	var stale []string
	for k := range cur.Tags {
		if _, ok := spec.Tags[k]; !ok {
			stale = append(stale, k)
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		if _, err := api.UntagRole(ctx, &iam.UntagRoleInput{RoleName: aws.String(spec.Name), TagKeys: stale}); err != nil {
			return nil, explain(err, "iam:UntagRole", subject)
		}
	}
	changed := false
	for k, v := range spec.Tags {
		if cur.Tags[k] != v {
			changed = true
		}
	}
	if changed {
		if _, err := api.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String(spec.Name), Tags: roleTags(spec.Tags)}); err != nil {
			return nil, explain(err, "iam:TagRole", subject)
		}
	}
	return ReadRole(ctx, api, spec.Name)
}

// createRole creates a role. When IAM says the role exists already (another
// run made it, or IAM had not yet shown it to the caller's read), it reports
// existed, and the caller reads the role and converges it.
func createRole(ctx context.Context, api IAMAPI, in *iam.CreateRoleInput) (existed bool, err error) {
	_, err = api.CreateRole(ctx, in)
	if errorCode(err) == "EntityAlreadyExists" {
		return true, nil
	}
	return false, explain(err, "iam:CreateRole", "role "+aws.ToString(in.RoleName))
}

func existsUnseen(subject string) error {
	return fmt.Errorf("%s: IAM says it exists but does not show it; IAM is eventually consistent, so run again in a minute", subject)
}

// roleShape is what both of rdsgate's role writers (EnsureRole for declared
// roles, the apply's executor for shard roles) converge: the trust policy,
// the session length and the description.
type roleShape struct {
	trust       *policies.Document // nil: unreadable, so rewritten
	maxSession  int
	description string
}

// convergeRole writes what differs between the role IAM holds and the one
// wanted: the trust policy compared by meaning, then session length and,
// when description is given, the description (one UpdateRole for both).
func convergeRole(ctx context.Context, api IAMAPI, subject, name string, cur, want roleShape, description *string) error {
	if cur.trust == nil || !policies.Equivalent(cur.trust, want.trust) {
		if _, err := api.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(string(want.trust.JSON()))}); err != nil {
			return explain(err, "iam:UpdateAssumeRolePolicy", subject)
		}
	}
	if cur.maxSession != want.maxSession || (description != nil && cur.description != want.description) {
		if _, err := api.UpdateRole(ctx, &iam.UpdateRoleInput{RoleName: aws.String(name), MaxSessionDuration: aws.Int32(int32(want.maxSession)), Description: description}); err != nil {
			return explain(err, "iam:UpdateRole", subject)
		}
	}
	return nil
}

func roleTags(user map[string]string) []iamtypes.Tag {
	keys := make([]string, 0, len(user))
	for k := range user {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tags := []iamtypes.Tag{{Key: aws.String(TagManaged), Value: aws.String(TagManagedValue)}}
	for _, k := range keys {
		tags = append(tags, iamtypes.Tag{Key: aws.String(k), Value: aws.String(user[k])})
	}
	return tags
}

// DeleteRole deletes a role rdsgate owns. It removes rdsgate's own connect
// policies from it first; anything else still attached (someone's inline or
// managed policy) stops it with a message naming what to remove, rather than
// deleting what rdsgate did not write.
func DeleteRole(ctx context.Context, api IAMAPI, name string) error {
	e := &executor{api: api}
	subject := "role " + name
	r, err := ReadPrincipal(ctx, api, policies.PrincipalRole, name)
	if err != nil || r == nil {
		return err
	}
	if !r.Managed() {
		return fmt.Errorf("%s has no %s tag; rdsgate does not delete roles it did not create", subject, TagManaged)
	}
	var foreign []string
	for pn := range r.Inline {
		if !ownInline(pn) {
			foreign = append(foreign, "inline policy "+pn)
		}
	}
	for _, arn := range r.Attached {
		if !ownManaged(name, arn[strings.LastIndexByte(arn, '/')+1:]) {
			foreign = append(foreign, "managed policy "+arn)
		}
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		return fmt.Errorf("%s still holds %s, which rdsgate did not write; detach or delete them (or destroy what attached them first) before the role can go",
			subject, strings.Join(foreign, ", "))
	}
	for _, pn := range slices.Sorted(maps.Keys(r.Inline)) {
		if err := e.deleteInline(ctx, policies.PrincipalRole, name, pn); err != nil {
			return err
		}
	}
	for _, arn := range r.Attached {
		if err := e.deletePolicy(ctx, arn); err != nil {
			return err
		}
	}
	if _, err := api.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)}); err != nil && !isNotFound(err) {
		return explain(err, "iam:DeleteRole", subject)
	}
	return nil
}

// RoleTrust is trust rdsgate adds to a role it does not own: statements
// under its own Sid, next to the role's others.
type RoleTrust struct {
	RoleName string
	Spec     policies.TrustSpec // Spec.Sid is required
}

// ReadRoleTrust returns the role's statements under the spec's Sid (none
// when they were removed) and the role's ARN; exists is false when the role
// is gone.
func ReadRoleTrust(ctx context.Context, api IAMAPI, role, sid string) (stmts []policies.Statement, arn string, exists bool, err error) {
	r, err := ReadRole(ctx, api, role)
	if err != nil || r == nil {
		return nil, "", false, err
	}
	return policies.StatementsWithSid(r.Trust, sid), r.ARN, true, nil
}

// PutRoleTrust adds (or replaces) rdsgate's statements in a role's trust
// policy; the role's other statements are kept as they are. No write when
// the role already holds them.
func PutRoleTrust(ctx context.Context, api IAMAPI, t RoleTrust) error {
	return changeTrust(ctx, api, t.RoleName, t.Spec.Sid, t.Spec.Statements())
}

// RemoveRoleTrust takes rdsgate's statements out of a role's trust policy.
func RemoveRoleTrust(ctx context.Context, api IAMAPI, role, sid string) error {
	return changeTrust(ctx, api, role, sid, nil)
}

func changeTrust(ctx context.Context, api IAMAPI, role, sid string, add []policies.Statement) error {
	subject := "role " + role
	r, err := ReadRole(ctx, api, role)
	if err != nil {
		return err
	}
	if r == nil {
		if add == nil {
			return nil
		}
		return fmt.Errorf("%s does not exist; create it first (rdsgate_role_trust adds trust to an existing role)", subject)
	}
	next := policies.WithStatements(r.Trust, sid, add)
	if policies.Equivalent(next, r.Trust) {
		return nil
	}
	if len(next.Statements) == 0 {
		return fmt.Errorf("removing rdsgate's trust statement %s would leave %s with an empty trust policy, which IAM refuses; delete the role or give it other trust first", sid, subject)
	}
	if n := policies.Size(next.JSON()); n > policies.QuotaValue("AssumeRolePolicySizeQuota") {
		return fmt.Errorf("%s: the trust policy with rdsgate's statement would be %d characters, over the default quota of %d; "+
			"if the account's quota was raised, ask AWS, otherwise trust fewer principals", subject, n, policies.QuotaValue("AssumeRolePolicySizeQuota"))
	}
	if _, err := api.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(role), PolicyDocument: aws.String(string(next.JSON()))}); err != nil {
		return explain(err, "iam:UpdateAssumeRolePolicy", subject)
	}
	return nil
}
