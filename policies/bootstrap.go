package policies

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Database types the proxy can be bootstrapped for.
const (
	TypeRDS                = "rds"
	TypeRDSProxy           = "rds-proxy"
	TypeRedshift           = "redshift"
	TypeRedshiftServerless = "redshift-serverless"
)

// BootstrapTypes lists the supported types in the order statements appear.
var BootstrapTypes = []string{TypeRDS, TypeRDSProxy, TypeRedshift, TypeRedshiftServerless}

// Names of the bootstrap documents rdsgate writes.
const (
	BootstrapPolicyName = "rdsgate-bootstrap"
	boundarySuffix      = "-boundary"
)

// BootstrapOptions describe the proxy's principal and what it serves.
type BootstrapOptions struct {
	Types []string
	// Kind and Name of the proxy's principal. Automatic mode needs a name,
	// because the proxy may only manage policies on itself.
	Kind PrincipalKind
	Name string
	Path string
	// AccountID scopes ARNs; "*" stands in when it is unknown, which IAM
	// confines to the policy's own account for IAM resources.
	AccountID string
	Partition string
	// AssumeRoleARNs the proxy may assume (role chaining into shard roles or
	// other accounts).
	AssumeRoleARNs []string
	// Manual leaves out every IAM write: an administrator applies the
	// connect policies (rdsgate shards apply) and enables IAM auth.
	Manual bool
	// Keep are statements of the principal's other policies to add to the
	// boundary, so that setting it takes none of their actions away
	// (KeepStatements finds them).
	Keep []Statement
}

// Explanation says in a sentence why a statement is there.
type Explanation struct {
	Sid  string
	Why  string
	Note string // what it does not cover, or what to do instead
}

// BootstrapPolicy is the proxy's permissions: the identity policy, the
// permissions boundary that caps what the proxy can grant itself in
// automatic mode, and why each statement is there.
type BootstrapPolicy struct {
	Options      BootstrapOptions
	Policy       *Document
	Boundary     *Document // nil in manual mode
	BoundaryName string
	BoundaryARN  string
	PrincipalARN string
	Explanations []Explanation
}

// NewBootstrapPolicy builds the proxy's bootstrap permissions.
func NewBootstrapPolicy(o BootstrapOptions) (*BootstrapPolicy, error) {
	if len(o.Types) == 0 {
		o.Types = []string{TypeRDS}
	}
	// Aurora clusters are RDS to IAM (the same rds: and rds-db: actions);
	// discover lists them as aurora, so the same word is taken here.
	types := make([]string, 0, len(o.Types))
	for _, t := range o.Types {
		if t == "aurora" {
			t = TypeRDS
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	o.Types = types
	for _, t := range o.Types {
		if !slices.Contains(BootstrapTypes, t) {
			return nil, fmt.Errorf("%w: unknown type %q; use one or more of %s", ErrInvalidInput, t, strings.Join(BootstrapTypes, ","))
		}
	}
	if o.Partition == "" {
		o.Partition = PartitionAWS
	}
	if err := ValidatePartition(o.Partition); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if o.AccountID == "" {
		o.AccountID = "*"
	} else if err := ValidateAccountID(o.AccountID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if o.Kind == "" {
		o.Kind = PrincipalRole
	}
	if o.Kind != PrincipalRole && o.Kind != PrincipalUser {
		return nil, fmt.Errorf("%w: principal kind %q must be role or user", ErrInvalidInput, o.Kind)
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if err := ValidateIAMPath(o.Path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if o.Name != "" {
		if err := ValidateIAMName(string(o.Kind), o.Name, 64); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
	} else if !o.Manual {
		return nil, fmt.Errorf("%w: automatic mode lets the proxy manage the connect policy of its own principal, so it needs the principal's name: give --role NAME or --user NAME, or use --manual", ErrInvalidInput)
	}
	for _, a := range o.AssumeRoleARNs {
		n, err := ParseIAMARN(a)
		if err != nil || n.Type != "role" {
			return nil, fmt.Errorf("%w: --assume-role-arn %q is not a role ARN (arn:aws:iam::123456789012:role/NAME)", ErrInvalidInput, a)
		}
		if n.Partition != o.Partition {
			return nil, fmt.Errorf("%w: --assume-role-arn %q is in partition %s, not %s", ErrInvalidInput, a, n.Partition, o.Partition)
		}
	}
	o.AssumeRoleARNs = sortStrings(slices.Clone(o.AssumeRoleARNs))

	b := &BootstrapPolicy{Options: o}
	arn := func(service, region, resource string) string {
		return ARN{Partition: o.Partition, Service: service, Region: region, AccountID: o.AccountID, Resource: resource}.String()
	}
	if o.Name != "" {
		if o.Kind == PrincipalUser {
			b.PrincipalARN = UserARN(o.Partition, o.AccountID, o.Path, o.Name)
		} else {
			b.PrincipalARN = RoleARN(o.Partition, o.AccountID, o.Path, o.Name)
		}
	}
	var policy, boundary []Statement
	allow := func(sid, why, note string, actions []string, resources ...string) {
		st := Statement{Sid: sid, Effect: Allow, Action: List(actions...), Resource: List(resources...)}
		if len(resources) == 1 {
			st.Resource = One(resources[0])
		}
		policy = append(policy, st)
		boundary = append(boundary, st)
		b.Explanations = append(b.Explanations, Explanation{Sid: sid, Why: why, Note: note})
	}
	has := func(t string) bool { return slices.Contains(o.Types, t) }
	if has(TypeRDS) {
		allow("RDSDiscovery", "find RDS instances and Aurora clusters, their endpoints (custom ones too), resource ids, IAM auth setting and tags",
			"Describe calls do not support resource-level permissions, so the resource is *.",
			[]string{"rds:DescribeDBClusterEndpoints", "rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:ListTagsForResource"}, "*")
		if !o.Manual {
			allow("RDSEnableIAMAuth", "turn on IAM database authentication on instances and clusters that lack it",
				"IAM cannot restrict a modify call to the IAM auth flag; use --manual and enable it yourself (rdsgate enable-iam-auth) to leave this out.",
				[]string{"rds:ModifyDBCluster", "rds:ModifyDBInstance"}, arn("rds", "*", "cluster:*"), arn("rds", "*", "db:*"))
		}
	}
	if has(TypeRDSProxy) {
		allow("RDSProxyDiscovery", "find RDS Proxies, their endpoints and targets",
			"", []string{"rds:DescribeDBProxies", "rds:DescribeDBProxyEndpoints", "rds:DescribeDBProxyTargets", "rds:ListTagsForResource"}, "*")
	}
	if has(TypeRedshift) {
		allow("RedshiftDiscovery", "find Redshift clusters and their endpoints", "",
			[]string{"redshift:DescribeClusters"}, "*")
		allow("RedshiftConnect", "get temporary database credentials for Redshift cluster users",
			"Redshift users are not sharded; narrow the cluster and user in the ARNs if you serve only some.",
			[]string{"redshift:GetClusterCredentials"}, arn("redshift", "*", "dbname:*/*"), arn("redshift", "*", "dbuser:*/*"))
	}
	if has(TypeRedshiftServerless) {
		allow("RedshiftServerlessDiscovery", "find Redshift Serverless workgroups and endpoints", "",
			[]string{"redshift-serverless:GetEndpointAccess", "redshift-serverless:GetWorkgroup", "redshift-serverless:ListEndpointAccess", "redshift-serverless:ListTagsForResource", "redshift-serverless:ListWorkgroups"}, "*")
		allow("RedshiftServerlessConnect", "get temporary database credentials for Redshift Serverless workgroups", "",
			[]string{"redshift-serverless:GetCredentials"}, arn("redshift-serverless", "*", "workgroup/*"))
	}
	if len(o.AssumeRoleARNs) > 0 {
		allow("AssumeRoles", "assume the roles that hold database permissions (role chaining into shard roles, or other accounts)",
			"Each role's trust policy must also name this principal.",
			[]string{assumeAction}, o.AssumeRoleARNs...)
	}
	if !o.Manual {
		connectPrefix := PolicyARN(o.Partition, o.AccountID, ManagedPolicyPath, o.Name+"-connect-")
		var own []string
		var attach []string
		if o.Kind == PrincipalUser {
			own = []string{"iam:DeleteUserPolicy", "iam:GetUser", "iam:GetUserPolicy", "iam:ListAttachedUserPolicies", "iam:ListUserPolicies", "iam:PutUserPolicy", "iam:TagUser", "iam:UntagUser"}
			attach = []string{"iam:AttachUserPolicy", "iam:DetachUserPolicy"}
		} else {
			own = []string{"iam:DeleteRolePolicy", "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:PutRolePolicy", "iam:TagRole", "iam:UntagRole"}
			attach = []string{"iam:AttachRolePolicy", "iam:DetachRolePolicy"}
		}
		allow("ManageOwnConnectPolicy", "write the proxy's own inline rds-db:connect policy as databases come and go, holding the apply lease (a tag) while it does",
			"Only on the proxy's own principal; the permissions boundary caps what any policy it writes can grant.",
			own, b.PrincipalARN)
		allow("ManageOwnConnectShards", "create and version the managed policies that hold the connect permissions that do not fit inline",
			"Only policies under /rdsgate/ named after this principal.",
			[]string{"iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:TagPolicy"},
			connectPrefix+"*")
		st := Statement{Sid: "AttachOwnConnectShards", Effect: Allow, Action: List(attach...), Resource: One(b.PrincipalARN),
			Condition: Condition{"ArnLike": {"iam:PolicyARN": One(connectPrefix + "*")}}}
		policy = append(policy, st)
		boundary = append(boundary, st)
		b.Explanations = append(b.Explanations, Explanation{Sid: st.Sid, Why: "attach those managed policies to the proxy's own principal",
			Note: "The condition limits attachment to the proxy's own connect policies."})
		// The boundary allows the connect permissions the proxy grants itself;
		// without it, writing its own policy would let it grant itself anything.
		boundary = append(boundary, Statement{Sid: "RDSConnect", Effect: Allow, Action: One(connectAction), Resource: One(arn("rds-db", "*", "dbuser:*/*"))})
		boundary = append(boundary, o.Keep...)
		b.BoundaryName = o.Name + boundarySuffix
		b.BoundaryARN = PolicyARN(o.Partition, o.AccountID, ManagedPolicyPath, b.BoundaryName)
		b.Boundary = &Document{Version: PolicyVersion, Statements: boundary}
	}
	b.Policy = &Document{Version: PolicyVersion, Statements: policy}
	return b, nil
}

// Check reports documents that would not fit IAM's quotas.
func (b *BootstrapPolicy) Check(q Quotas) error {
	if size, limit := b.Policy.Size(), q.inlineSize(b.Options.Kind); size > limit {
		return fmt.Errorf("the bootstrap policy is %d characters, more than the %d a %s's inline policies may hold", size, limit, b.Options.Kind)
	}
	if b.Boundary != nil {
		if size := b.Boundary.Size(); size > q.PolicySize {
			msg := fmt.Sprintf("the permissions boundary is %d characters, more than a managed policy's %d", size, q.PolicySize)
			if len(b.Options.Keep) > 0 {
				msg += fmt.Sprintf(" with the %s it keeps of the principal's other policies: move some of them to another role, or use --manual (no boundary)", Count(len(b.Options.Keep), "statement"))
			}
			return errors.New(msg)
		}
	}
	return nil
}

// IsBootstrapBoundary reports whether a policy ARN is the permissions
// boundary create-iam sets on the named principal: rdsgate_access_role
// leaves it to rdsgate_bootstrap_policy rather than take it away.
func IsBootstrapBoundary(arn, principal string) bool {
	n, err := ParseIAMARN(arn)
	return err == nil && n.Type == "policy" && n.Path == ManagedPolicyPath && n.Name == principal+boundarySuffix
}
