// Package iamfake is an in-memory IAM for fast tests of code that writes
// IAM: the operations rdsgate's bootstrap package uses, with IAM's quotas
// enforced on every write (LimitExceeded), its errors (NoSuchEntity,
// EntityAlreadyExists, DeleteConflict) and its habit of returning policy
// documents URL-encoded. It does not judge policy syntax: moto's server does,
// in the tests that run against it. A hook sees every successful write, so a
// test can check an invariant at every moment an apply passes through.
package iamfake

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
)

// Quotas are the limits the fake enforces; they are also what
// GetAccountSummary reports.
type Quotas struct {
	PolicySize, RolePolicySize, UserPolicySize int
	AttachedPerRole, AttachedPerUser           int
	AssumeRolePolicySize                       int
}

// Principal is a role or user as the fake holds it.
type Principal struct {
	Kind, Name, Path, ARN string
	Trust                 string
	MaxSession            int32
	Tags                  map[string]string
	Inline                map[string]string
	Attached              []string
	Boundary              string
}

// Policy is a customer managed policy.
type Policy struct {
	Name, Path, ARN string
	Tags            map[string]string
	Versions        []Version
	Default         string
}

// Version is one version of a managed policy.
type Version struct {
	ID       string
	Document string
	Created  time.Time
}

// IAM is the in-memory IAM. Its zero value is not usable: use New.
type IAM struct {
	mu       sync.Mutex
	Account  string
	Quotas   Quotas
	roles    map[string]*Principal
	users    map[string]*Principal
	policies map[string]*Policy // by ARN
	clock    time.Time
	// OnWrite, when set, is called after every successful write, with the
	// lock released.
	OnWrite func(op string)
	writes  int
	ops     []string
}

// New returns an empty IAM for an account with AWS's default quotas.
func New(account string) *IAM {
	return &IAM{Account: account, roles: map[string]*Principal{}, users: map[string]*Principal{}, policies: map[string]*Policy{},
		clock:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Quotas: Quotas{PolicySize: 6144, RolePolicySize: 10240, UserPolicySize: 2048, AttachedPerRole: 10, AttachedPerUser: 10, AssumeRolePolicySize: 2048}}
}

// Writes counts the successful writes so far.
func (f *IAM) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

type apiError struct{ code, msg string }

func (e *apiError) Error() string                 { return e.code + ": " + e.msg }
func (e *apiError) ErrorCode() string             { return e.code }
func (e *apiError) ErrorMessage() string          { return e.msg }
func (e *apiError) ErrorFault() smithy.ErrorFault { return smithy.FaultClient }

func noSuch(format string, args ...any) error {
	return &apiError{"NoSuchEntity", fmt.Sprintf(format, args...)}
}

// size counts characters as IAM does, white space outside strings not counted.
func size(doc string) int {
	n, in, esc := 0, false, false
	for _, r := range doc {
		switch {
		case in:
			n++
			switch {
			case esc:
				esc = false
			case r == '\\':
				esc = true
			case r == '"':
				in = false
			}
		case r == '"':
			n++
			in = true
		case !unicode.IsSpace(r):
			n++
		}
	}
	return n
}

// Ops lists the successful writes so far, by operation name.
func (f *IAM) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

func (f *IAM) wrote(op string) {
	f.writes++
	f.ops = append(f.ops, op)
	hook := f.OnWrite
	f.mu.Unlock()
	if hook != nil {
		hook(op)
	}
	f.mu.Lock()
}

func (f *IAM) tick() time.Time {
	f.clock = f.clock.Add(time.Second)
	return f.clock
}

func tagsOf(in []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range in {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func tagList(m map[string]string) []types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func cleanPath(p *string) string {
	if p == nil || *p == "" {
		return "/"
	}
	return *p
}

func (f *IAM) principal(kind, name string) *Principal {
	if kind == "user" {
		return f.users[name]
	}
	return f.roles[name]
}

// Role returns a copy of a role, or nil.
func (f *IAM) Role(name string) *Principal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copyOf(f.roles[name])
}

// User returns a copy of a user, or nil.
func (f *IAM) User(name string) *Principal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copyOf(f.users[name])
}

func (f *IAM) copyOf(p *Principal) *Principal {
	if p == nil {
		return nil
	}
	c := *p
	c.Tags, c.Inline = map[string]string{}, map[string]string{}
	for k, v := range p.Tags {
		c.Tags[k] = v
	}
	for k, v := range p.Inline {
		c.Inline[k] = v
	}
	c.Attached = append([]string(nil), p.Attached...)
	return &c
}

// Snapshot calls fn with every principal and the default document of every
// managed policy, under the lock.
func (f *IAM) Snapshot(fn func(principals []*Principal, documents map[string]string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []*Principal
	for _, r := range f.roles {
		ps = append(ps, r)
	}
	for _, u := range f.users {
		ps = append(ps, u)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].ARN < ps[j].ARN })
	docs := map[string]string{}
	for arn, p := range f.policies {
		docs[arn] = p.defaultDocument()
	}
	fn(ps, docs)
}

func (p *Policy) defaultDocument() string {
	for _, v := range p.Versions {
		if v.ID == p.Default {
			return v.Document
		}
	}
	return ""
}

// AddUser creates a user, as an administrator would.
func (f *IAM) AddUser(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[name] = &Principal{Kind: "user", Name: name, Path: "/", ARN: fmt.Sprintf("arn:aws:iam::%s:user/%s", f.Account, name),
		Tags: map[string]string{}, Inline: map[string]string{}}
}

func (f *IAM) checkInline(p *Principal, name, doc string) error {
	quota := f.Quotas.RolePolicySize
	if p.Kind == "user" {
		quota = f.Quotas.UserPolicySize
	}
	total := size(doc)
	for n, d := range p.Inline {
		if n != name {
			total += size(d)
		}
	}
	if total > quota {
		return &apiError{"LimitExceeded", fmt.Sprintf("Maximum policy size of %d bytes exceeded for %s %s", quota, p.Kind, p.Name)}
	}
	return nil
}

// GetAccountSummary reports the quotas.
func (f *IAM) GetAccountSummary(_ context.Context, _ *iam.GetAccountSummaryInput, _ ...func(*iam.Options)) (*iam.GetAccountSummaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.Quotas
	return &iam.GetAccountSummaryOutput{SummaryMap: map[string]int32{
		"PolicySizeQuota": int32(q.PolicySize), "RolePolicySizeQuota": int32(q.RolePolicySize), "UserPolicySizeQuota": int32(q.UserPolicySize),
		"AttachedPoliciesPerRoleQuota": int32(q.AttachedPerRole), "AttachedPoliciesPerUserQuota": int32(q.AttachedPerUser),
		"AssumeRolePolicySizeQuota": int32(q.AssumeRolePolicySize), "RolesQuota": 1000, "Roles": int32(len(f.roles)),
	}}, nil
}

func (f *IAM) roleOut(r *Principal) *types.Role {
	out := &types.Role{RoleName: aws.String(r.Name), Path: aws.String(r.Path), Arn: aws.String(r.ARN),
		AssumeRolePolicyDocument: aws.String(url.PathEscape(r.Trust)), MaxSessionDuration: aws.Int32(r.MaxSession), Tags: tagList(r.Tags)}
	if r.Boundary != "" {
		out.PermissionsBoundary = &types.AttachedPermissionsBoundary{PermissionsBoundaryArn: aws.String(r.Boundary)}
	}
	return out
}

// GetRole returns a role.
func (f *IAM) GetRole(_ context.Context, in *iam.GetRoleInput, _ ...func(*iam.Options)) (*iam.GetRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("The role with name %s cannot be found.", aws.ToString(in.RoleName))
	}
	return &iam.GetRoleOutput{Role: f.roleOut(r)}, nil
}

// CreateRole creates a role.
func (f *IAM) CreateRole(_ context.Context, in *iam.CreateRoleInput, _ ...func(*iam.Options)) (*iam.CreateRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := aws.ToString(in.RoleName)
	if f.roles[name] != nil {
		return nil, &apiError{"EntityAlreadyExists", "Role with name " + name + " already exists."}
	}
	trust := aws.ToString(in.AssumeRolePolicyDocument)
	if size(trust) > f.Quotas.AssumeRolePolicySize {
		return nil, &apiError{"LimitExceeded", "Cannot exceed quota for ACLSizePerRole"}
	}
	path := cleanPath(in.Path)
	r := &Principal{Kind: "role", Name: name, Path: path, ARN: fmt.Sprintf("arn:aws:iam::%s:role%s%s", f.Account, path, name),
		Trust: trust, MaxSession: aws.ToInt32(in.MaxSessionDuration), Tags: tagsOf(in.Tags), Inline: map[string]string{}}
	if r.MaxSession == 0 {
		r.MaxSession = 3600
	}
	f.roles[name] = r
	f.wrote("CreateRole")
	return &iam.CreateRoleOutput{Role: f.roleOut(r)}, nil
}

// UpdateRole changes the maximum session.
func (f *IAM) UpdateRole(_ context.Context, in *iam.UpdateRoleInput, _ ...func(*iam.Options)) (*iam.UpdateRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("role %s", aws.ToString(in.RoleName))
	}
	if in.MaxSessionDuration != nil {
		r.MaxSession = *in.MaxSessionDuration
	}
	f.wrote("UpdateRole")
	return &iam.UpdateRoleOutput{}, nil
}

// UpdateAssumeRolePolicy replaces a trust policy.
func (f *IAM) UpdateAssumeRolePolicy(_ context.Context, in *iam.UpdateAssumeRolePolicyInput, _ ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("role %s", aws.ToString(in.RoleName))
	}
	r.Trust = aws.ToString(in.PolicyDocument)
	f.wrote("UpdateAssumeRolePolicy")
	return &iam.UpdateAssumeRolePolicyOutput{}, nil
}

// DeleteRole deletes a role that holds no policies.
func (f *IAM) DeleteRole(_ context.Context, in *iam.DeleteRoleInput, _ ...func(*iam.Options)) (*iam.DeleteRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := aws.ToString(in.RoleName)
	r := f.roles[name]
	if r == nil {
		return nil, noSuch("role %s", name)
	}
	if len(r.Inline) > 0 || len(r.Attached) > 0 {
		return nil, &apiError{"DeleteConflict", "Cannot delete entity, must delete policies first."}
	}
	delete(f.roles, name)
	f.wrote("DeleteRole")
	return &iam.DeleteRoleOutput{}, nil
}

// ListRoles lists roles under a path prefix.
func (f *IAM) ListRoles(_ context.Context, in *iam.ListRolesInput, _ ...func(*iam.Options)) (*iam.ListRolesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := cleanPath(in.PathPrefix)
	out := &iam.ListRolesOutput{}
	var names []string
	for n, r := range f.roles {
		if strings.HasPrefix(r.Path, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		r := f.roleOut(f.roles[n])
		r.Tags = nil // ListRoles does not return tags
		out.Roles = append(out.Roles, *r)
	}
	return out, nil
}

// PutRolePermissionsBoundary sets a boundary.
func (f *IAM) PutRolePermissionsBoundary(_ context.Context, in *iam.PutRolePermissionsBoundaryInput, _ ...func(*iam.Options)) (*iam.PutRolePermissionsBoundaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("role %s", aws.ToString(in.RoleName))
	}
	r.Boundary = aws.ToString(in.PermissionsBoundary)
	f.wrote("PutRolePermissionsBoundary")
	return &iam.PutRolePermissionsBoundaryOutput{}, nil
}

// DeleteRolePermissionsBoundary removes a boundary.
func (f *IAM) DeleteRolePermissionsBoundary(_ context.Context, in *iam.DeleteRolePermissionsBoundaryInput, _ ...func(*iam.Options)) (*iam.DeleteRolePermissionsBoundaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("role %s", aws.ToString(in.RoleName))
	}
	r.Boundary = ""
	f.wrote("DeleteRolePermissionsBoundary")
	return &iam.DeleteRolePermissionsBoundaryOutput{}, nil
}

func (f *IAM) tag(kind, name string, tags []types.Tag, keys []string) error {
	p := f.principal(kind, name)
	if p == nil {
		return noSuch("%s %s", kind, name)
	}
	for k, v := range tagsOf(tags) {
		p.Tags[k] = v
	}
	for _, k := range keys {
		delete(p.Tags, k)
	}
	return nil
}

// TagRole adds tags.
func (f *IAM) TagRole(_ context.Context, in *iam.TagRoleInput, _ ...func(*iam.Options)) (*iam.TagRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.tag("role", aws.ToString(in.RoleName), in.Tags, nil); err != nil {
		return nil, err
	}
	f.wrote("TagRole")
	return &iam.TagRoleOutput{}, nil
}

// UntagRole removes tags.
func (f *IAM) UntagRole(_ context.Context, in *iam.UntagRoleInput, _ ...func(*iam.Options)) (*iam.UntagRoleOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.tag("role", aws.ToString(in.RoleName), nil, in.TagKeys); err != nil {
		return nil, err
	}
	f.wrote("UntagRole")
	return &iam.UntagRoleOutput{}, nil
}

// TagUser adds tags.
func (f *IAM) TagUser(_ context.Context, in *iam.TagUserInput, _ ...func(*iam.Options)) (*iam.TagUserOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.tag("user", aws.ToString(in.UserName), in.Tags, nil); err != nil {
		return nil, err
	}
	f.wrote("TagUser")
	return &iam.TagUserOutput{}, nil
}

// UntagUser removes tags.
func (f *IAM) UntagUser(_ context.Context, in *iam.UntagUserInput, _ ...func(*iam.Options)) (*iam.UntagUserOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.tag("user", aws.ToString(in.UserName), nil, in.TagKeys); err != nil {
		return nil, err
	}
	f.wrote("UntagUser")
	return &iam.UntagUserOutput{}, nil
}

// ListUserTags lists a user's tags.
func (f *IAM) ListUserTags(_ context.Context, in *iam.ListUserTagsInput, _ ...func(*iam.Options)) (*iam.ListUserTagsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[aws.ToString(in.UserName)]
	if u == nil {
		return nil, noSuch("user %s", aws.ToString(in.UserName))
	}
	return &iam.ListUserTagsOutput{Tags: tagList(u.Tags)}, nil
}

// ListRoleTags lists a role's tags.
func (f *IAM) ListRoleTags(_ context.Context, in *iam.ListRoleTagsInput, _ ...func(*iam.Options)) (*iam.ListRoleTagsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.roles[aws.ToString(in.RoleName)]
	if r == nil {
		return nil, noSuch("role %s", aws.ToString(in.RoleName))
	}
	return &iam.ListRoleTagsOutput{Tags: tagList(r.Tags)}, nil
}

func (f *IAM) getInline(kind, principal, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, principal)
	if p == nil {
		return "", noSuch("%s %s", kind, principal)
	}
	d, ok := p.Inline[name]
	if !ok {
		return "", noSuch("The %s policy with name %s cannot be found.", kind, name)
	}
	return url.PathEscape(d), nil
}

func (f *IAM) putInline(kind, principal, name, doc string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, principal)
	if p == nil {
		return noSuch("%s %s", kind, principal)
	}
	if err := f.checkInline(p, name, doc); err != nil {
		return err
	}
	p.Inline[name] = doc
	f.wrote("Put" + titleCase(kind) + "Policy")
	return nil
}

func (f *IAM) deleteInline(kind, principal, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, principal)
	if p == nil {
		return noSuch("%s %s", kind, principal)
	}
	if _, ok := p.Inline[name]; !ok {
		return noSuch("policy %s", name)
	}
	delete(p.Inline, name)
	f.wrote("Delete" + titleCase(kind) + "Policy")
	return nil
}

func (f *IAM) listInline(kind, principal string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, principal)
	if p == nil {
		return nil, noSuch("%s %s", kind, principal)
	}
	names := make([]string, 0, len(p.Inline))
	for n := range p.Inline {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func titleCase(kind string) string { return strings.ToUpper(kind[:1]) + kind[1:] }

// GetRolePolicy returns an inline policy, URL-encoded as IAM does.
func (f *IAM) GetRolePolicy(_ context.Context, in *iam.GetRolePolicyInput, _ ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error) {
	d, err := f.getInline("role", aws.ToString(in.RoleName), aws.ToString(in.PolicyName))
	if err != nil {
		return nil, err
	}
	return &iam.GetRolePolicyOutput{RoleName: in.RoleName, PolicyName: in.PolicyName, PolicyDocument: aws.String(d)}, nil
}

// PutRolePolicy writes an inline policy within the role's quota.
func (f *IAM) PutRolePolicy(_ context.Context, in *iam.PutRolePolicyInput, _ ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error) {
	return &iam.PutRolePolicyOutput{}, f.putInline("role", aws.ToString(in.RoleName), aws.ToString(in.PolicyName), aws.ToString(in.PolicyDocument))
}

// DeleteRolePolicy deletes an inline policy.
func (f *IAM) DeleteRolePolicy(_ context.Context, in *iam.DeleteRolePolicyInput, _ ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error) {
	return &iam.DeleteRolePolicyOutput{}, f.deleteInline("role", aws.ToString(in.RoleName), aws.ToString(in.PolicyName))
}

// ListRolePolicies lists inline policy names.
func (f *IAM) ListRolePolicies(_ context.Context, in *iam.ListRolePoliciesInput, _ ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error) {
	names, err := f.listInline("role", aws.ToString(in.RoleName))
	if err != nil {
		return nil, err
	}
	return &iam.ListRolePoliciesOutput{PolicyNames: names}, nil
}

// GetUser returns a user.
func (f *IAM) GetUser(_ context.Context, in *iam.GetUserInput, _ ...func(*iam.Options)) (*iam.GetUserOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[aws.ToString(in.UserName)]
	if u == nil {
		return nil, noSuch("The user with name %s cannot be found.", aws.ToString(in.UserName))
	}
	out := &types.User{UserName: aws.String(u.Name), Path: aws.String(u.Path), Arn: aws.String(u.ARN), Tags: tagList(u.Tags)}
	if u.Boundary != "" {
		out.PermissionsBoundary = &types.AttachedPermissionsBoundary{PermissionsBoundaryArn: aws.String(u.Boundary)}
	}
	return &iam.GetUserOutput{User: out}, nil
}

// GetUserPolicy returns an inline policy.
func (f *IAM) GetUserPolicy(_ context.Context, in *iam.GetUserPolicyInput, _ ...func(*iam.Options)) (*iam.GetUserPolicyOutput, error) {
	d, err := f.getInline("user", aws.ToString(in.UserName), aws.ToString(in.PolicyName))
	if err != nil {
		return nil, err
	}
	return &iam.GetUserPolicyOutput{UserName: in.UserName, PolicyName: in.PolicyName, PolicyDocument: aws.String(d)}, nil
}

// PutUserPolicy writes an inline policy within the user's quota.
func (f *IAM) PutUserPolicy(_ context.Context, in *iam.PutUserPolicyInput, _ ...func(*iam.Options)) (*iam.PutUserPolicyOutput, error) {
	return &iam.PutUserPolicyOutput{}, f.putInline("user", aws.ToString(in.UserName), aws.ToString(in.PolicyName), aws.ToString(in.PolicyDocument))
}

// DeleteUserPolicy deletes an inline policy.
func (f *IAM) DeleteUserPolicy(_ context.Context, in *iam.DeleteUserPolicyInput, _ ...func(*iam.Options)) (*iam.DeleteUserPolicyOutput, error) {
	return &iam.DeleteUserPolicyOutput{}, f.deleteInline("user", aws.ToString(in.UserName), aws.ToString(in.PolicyName))
}

// ListUserPolicies lists inline policy names.
func (f *IAM) ListUserPolicies(_ context.Context, in *iam.ListUserPoliciesInput, _ ...func(*iam.Options)) (*iam.ListUserPoliciesOutput, error) {
	names, err := f.listInline("user", aws.ToString(in.UserName))
	if err != nil {
		return nil, err
	}
	return &iam.ListUserPoliciesOutput{PolicyNames: names}, nil
}

func (f *IAM) attachedOut(kind, name string) ([]types.AttachedPolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, name)
	if p == nil {
		return nil, noSuch("%s %s", kind, name)
	}
	var out []types.AttachedPolicy
	for _, arn := range p.Attached {
		out = append(out, types.AttachedPolicy{PolicyArn: aws.String(arn), PolicyName: aws.String(arn[strings.LastIndexByte(arn, '/')+1:])})
	}
	return out, nil
}

func (f *IAM) attach(kind, name, arn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, name)
	if p == nil {
		return noSuch("%s %s", kind, name)
	}
	if f.policies[arn] == nil {
		return noSuch("Policy %s does not exist or is not attachable.", arn)
	}
	for _, a := range p.Attached {
		if a == arn {
			return nil
		}
	}
	limit := f.Quotas.AttachedPerRole
	if kind == "user" {
		limit = f.Quotas.AttachedPerUser
	}
	if len(p.Attached) >= limit {
		return &apiError{"LimitExceeded", fmt.Sprintf("Cannot exceed quota for PoliciesPer%s: %d", titleCase(kind), limit)}
	}
	p.Attached = append(p.Attached, arn)
	f.wrote("Attach" + titleCase(kind) + "Policy")
	return nil
}

func (f *IAM) detach(kind, name, arn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.principal(kind, name)
	if p == nil {
		return noSuch("%s %s", kind, name)
	}
	for i, a := range p.Attached {
		if a == arn {
			p.Attached = append(p.Attached[:i], p.Attached[i+1:]...)
			f.wrote("Detach" + titleCase(kind) + "Policy")
			return nil
		}
	}
	return noSuch("Policy %s was not found.", arn)
}

// ListAttachedRolePolicies lists a role's managed policies.
func (f *IAM) ListAttachedRolePolicies(_ context.Context, in *iam.ListAttachedRolePoliciesInput, _ ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error) {
	out, err := f.attachedOut("role", aws.ToString(in.RoleName))
	if err != nil {
		return nil, err
	}
	return &iam.ListAttachedRolePoliciesOutput{AttachedPolicies: out}, nil
}

// AttachRolePolicy attaches within the quota.
func (f *IAM) AttachRolePolicy(_ context.Context, in *iam.AttachRolePolicyInput, _ ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error) {
	return &iam.AttachRolePolicyOutput{}, f.attach("role", aws.ToString(in.RoleName), aws.ToString(in.PolicyArn))
}

// DetachRolePolicy detaches.
func (f *IAM) DetachRolePolicy(_ context.Context, in *iam.DetachRolePolicyInput, _ ...func(*iam.Options)) (*iam.DetachRolePolicyOutput, error) {
	return &iam.DetachRolePolicyOutput{}, f.detach("role", aws.ToString(in.RoleName), aws.ToString(in.PolicyArn))
}

// ListAttachedUserPolicies lists a user's managed policies.
func (f *IAM) ListAttachedUserPolicies(_ context.Context, in *iam.ListAttachedUserPoliciesInput, _ ...func(*iam.Options)) (*iam.ListAttachedUserPoliciesOutput, error) {
	out, err := f.attachedOut("user", aws.ToString(in.UserName))
	if err != nil {
		return nil, err
	}
	return &iam.ListAttachedUserPoliciesOutput{AttachedPolicies: out}, nil
}

// AttachUserPolicy attaches within the quota.
func (f *IAM) AttachUserPolicy(_ context.Context, in *iam.AttachUserPolicyInput, _ ...func(*iam.Options)) (*iam.AttachUserPolicyOutput, error) {
	return &iam.AttachUserPolicyOutput{}, f.attach("user", aws.ToString(in.UserName), aws.ToString(in.PolicyArn))
}

// DetachUserPolicy detaches.
func (f *IAM) DetachUserPolicy(_ context.Context, in *iam.DetachUserPolicyInput, _ ...func(*iam.Options)) (*iam.DetachUserPolicyOutput, error) {
	return &iam.DetachUserPolicyOutput{}, f.detach("user", aws.ToString(in.UserName), aws.ToString(in.PolicyArn))
}

// PutUserPermissionsBoundary sets a boundary.
func (f *IAM) PutUserPermissionsBoundary(_ context.Context, in *iam.PutUserPermissionsBoundaryInput, _ ...func(*iam.Options)) (*iam.PutUserPermissionsBoundaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[aws.ToString(in.UserName)]
	if u == nil {
		return nil, noSuch("user %s", aws.ToString(in.UserName))
	}
	u.Boundary = aws.ToString(in.PermissionsBoundary)
	f.wrote("PutUserPermissionsBoundary")
	return &iam.PutUserPermissionsBoundaryOutput{}, nil
}

// DeleteUserPermissionsBoundary removes a boundary.
func (f *IAM) DeleteUserPermissionsBoundary(_ context.Context, in *iam.DeleteUserPermissionsBoundaryInput, _ ...func(*iam.Options)) (*iam.DeleteUserPermissionsBoundaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[aws.ToString(in.UserName)]
	if u == nil {
		return nil, noSuch("user %s", aws.ToString(in.UserName))
	}
	u.Boundary = ""
	f.wrote("DeleteUserPermissionsBoundary")
	return &iam.DeleteUserPermissionsBoundaryOutput{}, nil
}

func (f *IAM) attachments(arn string) int {
	n := 0
	for _, m := range []map[string]*Principal{f.roles, f.users} {
		for _, p := range m {
			for _, a := range p.Attached {
				if a == arn {
					n++
				}
			}
		}
	}
	return n
}

func (f *IAM) policyOut(p *Policy) *types.Policy {
	return &types.Policy{PolicyName: aws.String(p.Name), Path: aws.String(p.Path), Arn: aws.String(p.ARN),
		DefaultVersionId: aws.String(p.Default), AttachmentCount: aws.Int32(int32(f.attachments(p.ARN))), Tags: tagList(p.Tags)}
}

// GetPolicy returns a managed policy.
func (f *IAM) GetPolicy(_ context.Context, in *iam.GetPolicyInput, _ ...func(*iam.Options)) (*iam.GetPolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("Policy %s was not found.", aws.ToString(in.PolicyArn))
	}
	return &iam.GetPolicyOutput{Policy: f.policyOut(p)}, nil
}

// CreatePolicy creates a managed policy within the size quota.
func (f *IAM) CreatePolicy(_ context.Context, in *iam.CreatePolicyInput, _ ...func(*iam.Options)) (*iam.CreatePolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := cleanPath(in.Path)
	arn := fmt.Sprintf("arn:aws:iam::%s:policy%s%s", f.Account, path, aws.ToString(in.PolicyName))
	if f.policies[arn] != nil {
		return nil, &apiError{"EntityAlreadyExists", "A policy called " + aws.ToString(in.PolicyName) + " already exists."}
	}
	doc := aws.ToString(in.PolicyDocument)
	if size(doc) > f.Quotas.PolicySize {
		return nil, &apiError{"LimitExceeded", fmt.Sprintf("Cannot exceed quota for PolicySize: %d", f.Quotas.PolicySize)}
	}
	p := &Policy{Name: aws.ToString(in.PolicyName), Path: path, ARN: arn, Tags: tagsOf(in.Tags), Default: "v1",
		Versions: []Version{{ID: "v1", Document: doc, Created: f.tick()}}}
	f.policies[arn] = p
	f.wrote("CreatePolicy")
	return &iam.CreatePolicyOutput{Policy: f.policyOut(p)}, nil
}

// DeletePolicy deletes a policy with no attachments and no other versions.
func (f *IAM) DeletePolicy(_ context.Context, in *iam.DeletePolicyInput, _ ...func(*iam.Options)) (*iam.DeletePolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.PolicyArn)
	p := f.policies[arn]
	if p == nil {
		return nil, noSuch("Policy %s was not found.", arn)
	}
	if f.attachments(arn) > 0 || len(p.Versions) > 1 {
		return nil, &apiError{"DeleteConflict", "Cannot delete a policy attached to entities or with versions."}
	}
	delete(f.policies, arn)
	f.wrote("DeletePolicy")
	return &iam.DeletePolicyOutput{}, nil
}

// ListPolicies lists local policies under a path prefix.
func (f *IAM) ListPolicies(_ context.Context, in *iam.ListPoliciesInput, _ ...func(*iam.Options)) (*iam.ListPoliciesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := cleanPath(in.PathPrefix)
	var arns []string
	for arn, p := range f.policies {
		if strings.HasPrefix(p.Path, prefix) {
			arns = append(arns, arn)
		}
	}
	sort.Strings(arns)
	out := &iam.ListPoliciesOutput{}
	for _, arn := range arns {
		po := f.policyOut(f.policies[arn])
		po.Tags = nil
		out.Policies = append(out.Policies, *po)
	}
	return out, nil
}

// ListPolicyTags lists a policy's tags.
func (f *IAM) ListPolicyTags(_ context.Context, in *iam.ListPolicyTagsInput, _ ...func(*iam.Options)) (*iam.ListPolicyTagsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("policy %s", aws.ToString(in.PolicyArn))
	}
	return &iam.ListPolicyTagsOutput{Tags: tagList(p.Tags)}, nil
}

// GetPolicyVersion returns a version, its document URL-encoded.
func (f *IAM) GetPolicyVersion(_ context.Context, in *iam.GetPolicyVersionInput, _ ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("policy %s", aws.ToString(in.PolicyArn))
	}
	for _, v := range p.Versions {
		if v.ID == aws.ToString(in.VersionId) {
			return &iam.GetPolicyVersionOutput{PolicyVersion: &types.PolicyVersion{VersionId: aws.String(v.ID),
				Document: aws.String(url.PathEscape(v.Document)), IsDefaultVersion: v.ID == p.Default, CreateDate: aws.Time(v.Created)}}, nil
		}
	}
	return nil, noSuch("version %s", aws.ToString(in.VersionId))
}

// CreatePolicyVersion adds a version; IAM keeps at most five.
func (f *IAM) CreatePolicyVersion(_ context.Context, in *iam.CreatePolicyVersionInput, _ ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("policy %s", aws.ToString(in.PolicyArn))
	}
	if len(p.Versions) >= 5 {
		return nil, &apiError{"LimitExceeded", "A managed policy can have up to 5 versions."}
	}
	doc := aws.ToString(in.PolicyDocument)
	if size(doc) > f.Quotas.PolicySize {
		return nil, &apiError{"LimitExceeded", fmt.Sprintf("Cannot exceed quota for PolicySize: %d", f.Quotas.PolicySize)}
	}
	n := 0
	for _, v := range p.Versions {
		k, _ := strconv.Atoi(strings.TrimPrefix(v.ID, "v"))
		n = max(n, k)
	}
	id := fmt.Sprintf("v%d", n+1)
	p.Versions = append(p.Versions, Version{ID: id, Document: doc, Created: f.tick()})
	if in.SetAsDefault {
		p.Default = id
	}
	f.wrote("CreatePolicyVersion")
	return &iam.CreatePolicyVersionOutput{PolicyVersion: &types.PolicyVersion{VersionId: aws.String(id), IsDefaultVersion: in.SetAsDefault}}, nil
}

// DeletePolicyVersion deletes a version that is not the default.
func (f *IAM) DeletePolicyVersion(_ context.Context, in *iam.DeletePolicyVersionInput, _ ...func(*iam.Options)) (*iam.DeletePolicyVersionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("policy %s", aws.ToString(in.PolicyArn))
	}
	id := aws.ToString(in.VersionId)
	if id == p.Default {
		return nil, &apiError{"DeleteConflict", "Cannot delete the default version of a policy."}
	}
	for i, v := range p.Versions {
		if v.ID == id {
			p.Versions = append(p.Versions[:i], p.Versions[i+1:]...)
			f.wrote("DeletePolicyVersion")
			return &iam.DeletePolicyVersionOutput{}, nil
		}
	}
	return nil, noSuch("version %s", id)
}

// ListPolicyVersions lists versions.
func (f *IAM) ListPolicyVersions(_ context.Context, in *iam.ListPolicyVersionsInput, _ ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.policies[aws.ToString(in.PolicyArn)]
	if p == nil {
		return nil, noSuch("policy %s", aws.ToString(in.PolicyArn))
	}
	out := &iam.ListPolicyVersionsOutput{}
	for _, v := range p.Versions {
		out.Versions = append(out.Versions, types.PolicyVersion{VersionId: aws.String(v.ID), IsDefaultVersion: v.ID == p.Default, CreateDate: aws.Time(v.Created)})
	}
	return out, nil
}

// ListEntitiesForPolicy lists who a policy is attached to.
func (f *IAM) ListEntitiesForPolicy(_ context.Context, in *iam.ListEntitiesForPolicyInput, _ ...func(*iam.Options)) (*iam.ListEntitiesForPolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.PolicyArn)
	out := &iam.ListEntitiesForPolicyOutput{}
	for _, r := range f.roles {
		for _, a := range r.Attached {
			if a == arn {
				out.PolicyRoles = append(out.PolicyRoles, types.PolicyRole{RoleName: aws.String(r.Name)})
			}
		}
	}
	for _, u := range f.users {
		for _, a := range u.Attached {
			if a == arn {
				out.PolicyUsers = append(out.PolicyUsers, types.PolicyUser{UserName: aws.String(u.Name)})
			}
		}
	}
	return out, nil
}
