package policies

import (
	"fmt"
	"time"
)

// Where the quotas come from. IAM counts policy sizes in characters without
// white space; iam:GetAccountSummary returns an account's live values.
const (
	sourceIAMQuotas   = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
	sourceKCIncrease  = "https://repost.aws/knowledge-center/iam-quota-increase"
	sourceRoleChain   = "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_terms-and-concepts.html#iam-term-role-chaining"
	sourceRDSIAMAuth  = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.html"
	sourceRDSIAMToken = "https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.html"
)

// Quota is one row of the quota table.
type Quota struct {
	Name       string // the key iam:GetAccountSummary uses, where it has one
	Value      int
	Unit       string
	Adjustable string // how far it can be raised, or "" when it is fixed
	Source     string
}

// QuotaTable lists the AWS limits rdsgate plans against, each with its source.
var QuotaTable = []Quota{
	// "Managed policy size: 6,144 characters"; white space is not counted.
	{Name: "PolicySizeQuota", Value: 6144, Unit: "characters", Source: sourceIAMQuotas},
	// "Role policy size: 10,240 characters" for all inline policies of a role together.
	{Name: "RolePolicySizeQuota", Value: 10240, Unit: "characters", Source: sourceIAMQuotas},
	// "User policy size: 2,048 characters" for all inline policies of a user together.
	{Name: "UserPolicySizeQuota", Value: 2048, Unit: "characters", Source: sourceIAMQuotas},
	// "Managed policies per role: 10"; the knowledge center raises it to 20,
	// newer guides allow 25 for roles.
	{Name: "AttachedPoliciesPerRoleQuota", Value: 10, Unit: "policies", Adjustable: "20 (25 for roles in newer guides)", Source: sourceKCIncrease},
	// "Managed policies per user: 10", raisable to 20.
	{Name: "AttachedPoliciesPerUserQuota", Value: 10, Unit: "policies", Adjustable: "20", Source: sourceKCIncrease},
	// "Role trust policy length: 2,048 characters", raisable to 4,096 (8,192 in newer guides).
	{Name: "AssumeRolePolicySizeQuota", Value: 2048, Unit: "characters", Adjustable: "4096 (8192 in newer guides)", Source: sourceIAMQuotas},
	// "Versions of a managed policy that can be stored: 5".
	{Name: "PolicyVersionsInUseQuota", Value: 5, Unit: "versions", Source: sourceIAMQuotas},
	// "Roles in an AWS account: 1,000", raisable to 5,000.
	{Name: "Roles", Value: 1000, Unit: "roles", Adjustable: "5000", Source: sourceIAMQuotas},
	// "Role name: 64 characters".
	{Name: "RoleNameLength", Value: 64, Unit: "characters", Source: sourceIAMQuotas},
	// "Policy name: 128 characters".
	{Name: "PolicyNameLength", Value: 128, Unit: "characters", Source: sourceIAMQuotas},
	// A role-chained session lasts at most one hour.
	{Name: "RoleChainSessionSeconds", Value: 3600, Unit: "seconds", Source: sourceRoleChain},
	// An RDS IAM authentication token is valid for 15 minutes.
	{Name: "RDSAuthTokenSeconds", Value: 900, Unit: "seconds", Source: sourceRDSIAMToken},
	// AWS advises keeping new IAM-authenticated connections under about 200
	// per second per instance.
	{Name: "RDSNewIAMConnectionsPerSecond", Value: 200, Unit: "connections/s", Source: sourceRDSIAMAuth},
}

// QuotaValue returns the default value of a quota in QuotaTable by name.
func QuotaValue(name string) int {
	for _, q := range QuotaTable {
		if q.Name == name {
			return q.Value
		}
	}
	panic("policies: no quota named " + name)
}

// Durations that follow from the table.
var (
	RoleChainMaxSession = time.Duration(QuotaValue("RoleChainSessionSeconds")) * time.Second
	AuthTokenLifetime   = time.Duration(QuotaValue("RDSAuthTokenSeconds")) * time.Second
)

// Quotas are the limits a plan must fit, named after the keys of
// iam:GetAccountSummary. Start from DefaultQuotas and override what the
// account reports.
type Quotas struct {
	PolicySize              int // managed policy document, characters
	RolePolicySize          int // all inline policies of a role together
	UserPolicySize          int // all inline policies of a user together
	AttachedPoliciesPerRole int
	AttachedPoliciesPerUser int
	AssumeRolePolicySize    int // trust policy of a role
	PolicyVersions          int
	Roles                   int
	RoleNameLength          int
	PolicyNameLength        int
}

// DefaultQuotas returns AWS's default quotas.
func DefaultQuotas() Quotas {
	return Quotas{
		PolicySize:              QuotaValue("PolicySizeQuota"),
		RolePolicySize:          QuotaValue("RolePolicySizeQuota"),
		UserPolicySize:          QuotaValue("UserPolicySizeQuota"),
		AttachedPoliciesPerRole: QuotaValue("AttachedPoliciesPerRoleQuota"),
		AttachedPoliciesPerUser: QuotaValue("AttachedPoliciesPerUserQuota"),
		AssumeRolePolicySize:    QuotaValue("AssumeRolePolicySizeQuota"),
		PolicyVersions:          QuotaValue("PolicyVersionsInUseQuota"),
		Roles:                   QuotaValue("Roles"),
		RoleNameLength:          QuotaValue("RoleNameLength"),
		PolicyNameLength:        QuotaValue("PolicyNameLength"),
	}
}

// Largest values AWS grants on request; a value above them is a typo.
const (
	maxAttachedPerRole = 25
	maxAttachedPerUser = 20
)

// Validate checks that the quotas are ones AWS could report.
func (q Quotas) Validate() error {
	switch {
	case q.PolicySize < 1 || q.PolicySize > 131072:
		return fmt.Errorf("managed policy size %d is out of range (AWS default 6144)", q.PolicySize)
	case q.RolePolicySize < 1 || q.RolePolicySize > 131072:
		return fmt.Errorf("role inline policy size %d is out of range (AWS default 10240)", q.RolePolicySize)
	case q.UserPolicySize < 1 || q.UserPolicySize > 131072:
		return fmt.Errorf("user inline policy size %d is out of range (AWS default 2048)", q.UserPolicySize)
	case q.AttachedPoliciesPerRole < 0 || q.AttachedPoliciesPerRole > maxAttachedPerRole:
		return fmt.Errorf("managed policies per role must be between 0 and %d (AWS default 10, raisable to 20; newer guides allow 25), not %d", maxAttachedPerRole, q.AttachedPoliciesPerRole)
	case q.AttachedPoliciesPerUser < 0 || q.AttachedPoliciesPerUser > maxAttachedPerUser:
		return fmt.Errorf("managed policies per user must be between 0 and %d (AWS default 10), not %d", maxAttachedPerUser, q.AttachedPoliciesPerUser)
	case q.AssumeRolePolicySize < 1:
		return fmt.Errorf("trust policy size %d is out of range (AWS default 2048)", q.AssumeRolePolicySize)
	}
	return nil
}

// inlineSize is the inline budget of a principal kind.
func (q Quotas) inlineSize(kind PrincipalKind) int {
	if kind == PrincipalUser {
		return q.UserPolicySize
	}
	return q.RolePolicySize
}

// attached is the managed policy attachment limit of a principal kind.
func (q Quotas) attached(kind PrincipalKind) int {
	if kind == PrincipalUser {
		return q.AttachedPoliciesPerUser
	}
	return q.AttachedPoliciesPerRole
}
