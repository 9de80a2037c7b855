package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The plan: where each database's rds-db:connect permission lives, the
// steps that write it, and reading, writing and checking plan files. The
// planner that makes one is in planner.go and pack.go.

// PrincipalKind is the kind of IAM principal that holds permissions.
type PrincipalKind string

// Principal kinds.
const (
	PrincipalRole PrincipalKind = "role"
	PrincipalUser PrincipalKind = "user"
)

// Names and paths of what the planner creates. Shard roles live under a path
// of their own so the base principal can be allowed to assume exactly the
// roles rdsgate made for it, with a statement whose size does not grow with
// the fleet.
const (
	InlinePolicyName  = "rdsgate-connect"
	ManagedPolicyPath = "/rdsgate/"
	PlanFormatVersion = 1
	connectAction     = "rds-db:connect"
	assumeAction      = "sts:AssumeRole"
	// DefaultMaxShardRoles follows IAM's default of 1,000 roles per account.
	DefaultMaxShardRoles = 1000
)

// Target is where a plan may place permissions: the base principal the proxy
// runs as and the shard roles it may reach by role chaining.
type Target struct {
	// Kind and Name of the base principal (the proxy's own role or user).
	Kind PrincipalKind
	Name string
	// Path of the base principal; "/" when empty.
	Path string
	// AccountID is needed when the inventory is empty; otherwise it must match.
	AccountID string
	// MaxShardRoles is how many extra roles the plan may create; 0 forbids them.
	MaxShardRoles int
	// ShardRolePrefix names shard roles prefix+"001"...; "<name>-shard-" when empty.
	ShardRolePrefix string
	// ExternalID, when set, is required by the shard roles' trust policies.
	ExternalID string
	// ReservedInline is how many characters of the base principal's inline
	// budget other inline policies already use.
	ReservedInline int
	// ReservedManaged is how many managed policies are already attached to
	// the base principal by others.
	ReservedManaged int
}

// PlanInput is everything a plan is made from.
type PlanInput struct {
	Inventory *Inventory
	Target    Target
	Quotas    Quotas
	// Previous is the plan in effect; databases stay where it put them unless
	// they must move.
	Previous *Plan
}

// Plan is the placement of rds-db:connect permissions over principals, and
// the ordered steps that take AWS from the previous plan to this one. Its JSON
// form is the contract between the planner, apply, drift, the proxy and CI.
type Plan struct {
	FormatVersion int             `json:"format_version"`
	Partition     string          `json:"partition"`
	AccountID     string          `json:"account_id"`
	Base          PrincipalRef    `json:"base"`
	Settings      PlanSettings    `json:"settings"`
	Principals    []PlanPrincipal `json:"principals"`
	// Databases says where each database's permission lives, sorted by name:
	// the proxy reads it to know which role to assume, apply to name what
	// AWS holds.
	Databases []PlanDatabase `json:"databases"`
	Steps     []Step         `json:"steps"`
	Stats     Stats          `json:"stats"`
}

// PlanDatabase is one inventory entry and the document that grants it.
type PlanDatabase struct {
	Name       string `json:"name"`
	Region     string `json:"region"`
	ResourceID string `json:"resource_id"`
	Principal  string `json:"principal"`
	Policy     string `json:"policy"`
}

// ResourcePrefix is the part of an rds-db ARN before the database user, the
// same for every user of the database.
func (d PlanDatabase) ResourcePrefix(partition, account string) string {
	return DBUserARN{Partition: partition, Region: d.Region, AccountID: account, ResourceID: d.ResourceID}.String()
}

// PrincipalRef names a principal.
type PrincipalRef struct {
	Kind PrincipalKind `json:"kind"`
	Name string        `json:"name"`
	Path string        `json:"path"`
	ARN  string        `json:"arn"`
}

// PlanSettings records the target and quotas a plan was made for, so apply
// and drift check against the same numbers.
type PlanSettings struct {
	MaxShardRoles        int    `json:"max_shard_roles"`
	ShardRolePrefix      string `json:"shard_role_prefix"`
	ShardRolePath        string `json:"shard_role_path"`
	ExternalID           string `json:"external_id,omitempty"`
	ReservedInline       int    `json:"reserved_inline"`
	ReservedManaged      int    `json:"reserved_managed"`
	PolicySize           int    `json:"managed_policy_size"`
	InlineSize           int    `json:"inline_policy_size"`
	MaxManaged           int    `json:"max_managed"`
	AssumeRolePolicySize int    `json:"trust_policy_size"`
	// ShardInlineSize and ShardMaxManaged are the quotas of shard roles,
	// which differ from the base's when the base is a user; zero in plans
	// made before they were recorded, meaning AWS's defaults.
	ShardInlineSize int `json:"shard_inline_policy_size,omitempty"`
	ShardMaxManaged int `json:"shard_max_managed,omitempty"`
}

// ShardQuotas are the inline budget and managed policy limit of a shard role.
func (s PlanSettings) ShardQuotas() (inline, managed int) {
	inline, managed = s.ShardInlineSize, s.ShardMaxManaged
	if inline == 0 {
		inline = QuotaValue("RolePolicySizeQuota")
	}
	if managed == 0 {
		managed = QuotaValue("AttachedPoliciesPerRoleQuota")
	}
	return inline, managed
}

// PlanPrincipal is a role or user and the documents it holds.
type PlanPrincipal struct {
	Kind PrincipalKind `json:"kind"`
	Name string        `json:"name"`
	Path string        `json:"path"`
	ARN  string        `json:"arn"`
	// Shard marks roles the plan creates and owns; the base principal exists already.
	Shard bool `json:"shard"`
	// TrustPolicy of a shard role: the base principal may assume it.
	TrustPolicy        *Document    `json:"trust_policy,omitempty"`
	MaxSessionDuration int          `json:"max_session_duration,omitempty"`
	InlinePolicies     []PlanPolicy `json:"inline_policies"`
	ManagedPolicies    []PlanPolicy `json:"managed_policies"`
	// Databases are the inventory names this principal may connect to.
	Databases []string `json:"databases"`
}

// PlanPolicy is one policy document of a principal.
type PlanPolicy struct {
	Name      string    `json:"name"`
	Path      string    `json:"path,omitempty"`
	ARN       string    `json:"arn,omitempty"`
	Document  *Document `json:"document"`
	Size      int       `json:"size"`
	Quota     int       `json:"quota"`
	Databases []string  `json:"databases"`
}

// Step is one write of an apply, in order. Every step that grants a database
// comes before any step that takes one away, so access never has a gap.
type Step struct {
	Phase     string        `json:"phase"`  // prepare, grant, revoke, cleanup
	Action    string        `json:"action"` // see the Action* constants
	Kind      PrincipalKind `json:"principal_kind"`
	Principal string        `json:"principal"`
	Policy    string        `json:"policy,omitempty"`
	Adds      []string      `json:"adds,omitempty"`
	Removes   []string      `json:"removes,omitempty"`
	// Document is what the step writes when it is not the plan's document:
	// old and new together while databases change places (Interim), or a
	// temporary document that holds them meanwhile (Temporary).
	Document  *Document `json:"document,omitempty"`
	Interim   bool      `json:"interim,omitempty"`
	Temporary bool      `json:"temporary,omitempty"`
}

// String describes a step for people: what it does, to what, and how many
// databases it adds and removes.
func (st Step) String() string {
	s := fmt.Sprintf("%s %s %s", st.Action, st.Kind, st.Principal)
	if st.Policy != "" {
		s += " / " + st.Policy
	}
	switch a, r := len(st.Adds), len(st.Removes); {
	case a > 0 && r > 0:
		s += fmt.Sprintf(" (+%d, -%d)", a, r)
	case a > 0:
		s += fmt.Sprintf(" (+%d)", a)
	case r > 0:
		s += fmt.Sprintf(" (-%d)", r)
	}
	switch {
	case st.Interim:
		s += " [old and new together until a later step]"
	case st.Temporary:
		s += " [temporary, removed in a later step]"
	}
	return s
}

// Step actions.
const (
	ActionCreateRole    = "create_role"
	ActionUpdateTrust   = "update_trust_policy"
	ActionPutInline     = "put_inline_policy"
	ActionPutManaged    = "put_managed_policy"
	ActionDeleteInline  = "delete_inline_policy"
	ActionDeleteManaged = "delete_managed_policy"
	ActionDeleteRole    = "delete_role"
)

// Step phases, in the order they run.
const (
	PhasePrepare = "prepare"
	PhaseGrant   = "grant"
	PhaseRevoke  = "revoke"
	PhaseCleanup = "cleanup"
)

// Stats summarize a plan.
type Stats struct {
	Databases  int `json:"databases"`
	Principals int `json:"principals"`
	Documents  int `json:"documents"`
	// LowerBound is the fewest documents any plan filling the principals in
	// order could use.
	LowerBound int `json:"lower_bound"`
	// Moved counts databases that changed document since the previous plan.
	Moved   int `json:"moved"`
	Added   int `json:"added"`
	Removed int `json:"removed"`
	// Written counts documents the apply writes or deletes.
	Written int `json:"written"`
	// Characters used by all documents, and their total quota.
	Characters int `json:"characters"`
	Capacity   int `json:"capacity"`
}

// NoFitError says that no plan fits the quotas and what to change.
type NoFitError struct{ Msg string }

func (e *NoFitError) Error() string { return e.Msg }

// ErrPlanFormat marks a plan file that cannot be read.
var ErrPlanFormat = errors.New("invalid plan")

// ReadPlan parses a plan written by Plan.JSON.
func ReadPlan(data []byte, source string) (*Plan, error) {
	var probe struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w %s: %s", ErrPlanFormat, source, describeJSONError(data, err))
	}
	if probe.FormatVersion == nil {
		return nil, fmt.Errorf("%w %s: no format_version; is this a plan written by `rdsgate shards plan --format json`?", ErrPlanFormat, source)
	}
	if *probe.FormatVersion > PlanFormatVersion {
		return nil, fmt.Errorf("%w %s: format version %d is newer than this rdsgate understands (%d); upgrade rdsgate", ErrPlanFormat, source, *probe.FormatVersion, PlanFormatVersion)
	}
	var plan Plan
	if err := json.Unmarshal(data, &plan); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrPlanFormat, source, err)
	}
	return &plan, nil
}

// JSON writes the plan, indented, with documents in canonical form.
func (pl *Plan) JSON() ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(pl); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// PrincipalFor returns the principal that holds a database, or nil.
func (pl *Plan) PrincipalFor(database string) *PlanPrincipal {
	i, ok := slices.BinarySearchFunc(pl.Databases, database, func(d PlanDatabase, n string) int { return strings.Compare(d.Name, n) })
	if !ok {
		return nil
	}
	for j := range pl.Principals {
		if pl.Principals[j].Name == pl.Databases[i].Principal {
			return &pl.Principals[j]
		}
	}
	return nil
}

// Check verifies a plan against its own settings before anything is written:
// every document within its quota by IAM's count, each principal's inline
// policies together within its budget, attached policies within the limit,
// and names IAM accepts. A plan read from a file may have been edited; IAM
// emulators do not enforce sizes; so apply checks instead of trusting.
func (pl *Plan) Check() error {
	if pl.FormatVersion > PlanFormatVersion {
		return fmt.Errorf("%w: plan format version %d is newer than this rdsgate understands (%d); upgrade rdsgate", ErrPlanFormat, pl.FormatVersion, PlanFormatVersion)
	}
	s := pl.Settings
	if pl.Base.Name == "" || pl.Base.ARN == "" || (pl.Base.Kind != PrincipalRole && pl.Base.Kind != PrincipalUser) {
		return fmt.Errorf("%w: the plan names no base principal", ErrPlanFormat)
	}
	if err := ValidateAccountID(pl.AccountID); err != nil {
		return fmt.Errorf("%w: %w", ErrPlanFormat, err)
	}
	for _, pp := range pl.Principals {
		base := !pp.Shard
		if base && (pp.Name != pl.Base.Name || pp.Kind != pl.Base.Kind) {
			return fmt.Errorf("%w: principal %s is neither the base nor a shard role", ErrPlanFormat, pp.Name)
		}
		if err := ValidateIAMName(string(pp.Kind), pp.Name, QuotaValue("RoleNameLength")); err != nil {
			return fmt.Errorf("%w: %w", ErrPlanFormat, err)
		}
		inlineLimit, managedLimit := s.InlineSize-s.ReservedInline, s.MaxManaged-s.ReservedManaged
		if !base {
			inlineLimit, managedLimit = s.ShardQuotas()
			if pp.Kind != PrincipalRole {
				return fmt.Errorf("%w: shard %s must be a role", ErrPlanFormat, pp.Name)
			}
			if pp.TrustPolicy == nil {
				return fmt.Errorf("%w: shard role %s has no trust policy", ErrPlanFormat, pp.Name)
			}
			if n := pp.TrustPolicy.Size(); n > s.AssumeRolePolicySize {
				return &NoFitError{Msg: fmt.Sprintf("the trust policy of %s is %d characters, over the quota of %d", pp.Name, n, s.AssumeRolePolicySize)}
			}
		}
		inline := 0
		for _, pol := range pp.InlinePolicies {
			if pol.Document == nil {
				return fmt.Errorf("%w: %s/%s has no document", ErrPlanFormat, pp.Name, pol.Name)
			}
			inline += pol.Document.Size()
		}
		if inline > inlineLimit {
			return &NoFitError{Msg: fmt.Sprintf("the inline policies of %s %s are %d characters, over the %d its budget leaves (quota %d, reserved %d)", pp.Kind, pp.Name, inline, inlineLimit, s.InlineSize, s.ReservedInline)}
		}
		if len(pp.ManagedPolicies) > managedLimit {
			return &NoFitError{Msg: fmt.Sprintf("%s %s has %d managed policies, over the limit of %d", pp.Kind, pp.Name, len(pp.ManagedPolicies), managedLimit)}
		}
		for _, pol := range pp.ManagedPolicies {
			if pol.Document == nil {
				return fmt.Errorf("%w: %s/%s has no document", ErrPlanFormat, pp.Name, pol.Name)
			}
			if n := pol.Document.Size(); n > s.PolicySize {
				return &NoFitError{Msg: fmt.Sprintf("managed policy %s is %d characters, over the quota of %d", pol.Name, n, s.PolicySize)}
			}
			if err := ValidateIAMName("policy", pol.Name, QuotaValue("PolicyNameLength")); err != nil {
				return fmt.Errorf("%w: %w", ErrPlanFormat, err)
			}
		}
	}
	return nil
}

// ShardRolePath is the IAM path of the shard roles of a base principal.
func ShardRolePath(base string) string { return "/rdsgate/" + base + "/" }

// ShardRolesARN is the wildcard ARN of every shard role of a base principal:
// what the base principal's sts:AssumeRole permission names, so it does not
// grow with the fleet.
func ShardRolesARN(partition, account, base string) string {
	return RoleARN(partition, account, ShardRolePath(base), "*")
}
