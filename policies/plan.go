package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

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

// grant is the unit of placement: one database resource and every user
// allowed on it. Inventory entries that share a resource (an Aurora writer and
// reader endpoint) share a grant, so the ARN is written once.
type grant struct {
	key     string // region/resource-id
	names   []string
	arns    []string
	cost    int // characters in a Resource list: sum of len(arn)+3
	prevBin int
	bin     int
	grew    bool // has ARNs its previous document did not
}

type bin struct {
	principal int // 0 is the base, n > 0 is shard role n
	slot      int // 0 inline, n > 0 managed policy n
	capacity  int // characters available for grant costs; 0 when unusable
	used      int
	grants    []int
	source    bool // gives grants to other documents; may not gain
	sink      bool // gains grants
}

type planner struct {
	in                 PlanInput
	t                  Target
	q                  Quotas
	partition, account string
	baseARN, shardPath string
	assumePattern      string
	baseSlots          int
	shardSlots         int
	grants             []grant
	bins               []bin
	tree               *fitTree
	prev               []*prevDoc
	prevPrincipals     map[string]*PlanPrincipal
}

type prevDoc struct {
	principal PlanPrincipal
	policy    PlanPolicy
	managed   bool
	bin       int
	arns      map[string]bool
}

// NewPlan places the inventory's permissions over the target's principals.
func NewPlan(in PlanInput) (*Plan, error) {
	p, err := newPlanner(in)
	if err != nil {
		return nil, err
	}
	if err := p.readPrevious(); err != nil {
		return nil, err
	}
	p.keep()
	placeErr := p.place()
	// A fresh plan never beats the lower bound, so only look for one when
	// the incremental plan is not already within a document of it.
	if in.Previous != nil && (placeErr != nil || p.usedBins() > p.lowerBound()+1) {
		// Compare with the plan made from scratch: an incremental plan may
		// leave holes, and once it needs two documents more than a fresh one
		// the emptiest documents are drained. A single change never triggers
		// it, so it does not add churn to small changes.
		fresh := in
		fresh.Previous = nil
		f, err := newPlanner(fresh)
		if err == nil && f.place() == nil {
			switch {
			case placeErr != nil:
				return nil, &NoFitError{Msg: placeErr.Error() + " A plan made from scratch (without --previous) fits, but it moves databases between documents in ways one apply cannot do without a gap in access; apply it in a maintenance window, or raise the quotas."}
			case p.usedBins() > f.usedBins()+1:
				p.compact(f.usedBins())
			}
		}
	}
	if placeErr != nil {
		return nil, placeErr
	}
	return p.render(p.lowerBound())
}

func newPlanner(in PlanInput) (*planner, error) {
	p := &planner{in: in, t: in.Target, q: in.Quotas}
	if err := p.setup(); err != nil {
		return nil, err
	}
	p.buildGrants()
	return p, nil
}

func (p *planner) setup() error {
	if p.in.Inventory == nil {
		p.in.Inventory = &Inventory{}
	}
	if err := p.q.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	t := &p.t
	if t.Kind != PrincipalRole && t.Kind != PrincipalUser {
		return fmt.Errorf("%w: principal kind %q must be role or user", ErrInvalidInput, t.Kind)
	}
	if err := ValidateIAMName(string(t.Kind), t.Name, p.q.RoleNameLength); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if t.Path == "" {
		t.Path = "/"
	}
	if err := ValidateIAMPath(t.Path); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if t.ShardRolePrefix == "" {
		t.ShardRolePrefix = t.Name + "-shard-"
	}
	if t.MaxShardRoles < 0 || t.MaxShardRoles > 5000 {
		return fmt.Errorf("%w: shard roles must be between 0 and 5000 (IAM's largest role quota), not %d", ErrInvalidInput, t.MaxShardRoles)
	}
	if t.MaxShardRoles > 0 {
		if err := ValidateIAMName("shard role", shardRoleName(t.ShardRolePrefix, t.MaxShardRoles), p.q.RoleNameLength); err != nil {
			return fmt.Errorf("%w: %w; choose a shorter shard role prefix", ErrInvalidInput, err)
		}
		if err := ValidateIAMName("managed policy", managedPolicyName(shardRoleName(t.ShardRolePrefix, t.MaxShardRoles), p.q.AttachedPoliciesPerRole), p.q.PolicyNameLength); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
	}
	inlineQuota := p.q.inlineSize(t.Kind)
	if t.ReservedInline < 0 || t.ReservedInline > inlineQuota {
		return fmt.Errorf("%w: reserved inline characters must be between 0 and the %s inline quota %d, not %d", ErrInvalidInput, t.Kind, inlineQuota, t.ReservedInline)
	}
	attached := p.q.attached(t.Kind)
	if t.ReservedManaged < 0 || t.ReservedManaged > attached {
		return fmt.Errorf("%w: reserved managed policies must be between 0 and the %s quota %d, not %d", ErrInvalidInput, t.Kind, attached, t.ReservedManaged)
	}
	// Partition and account come from the inventory; a plan serves one
	// account because IAM database authentication does not cross accounts.
	p.account = t.AccountID
	for _, db := range p.in.Inventory.Databases {
		part, err := PartitionOf(db.Region)
		if err != nil {
			return fmt.Errorf("%w: database %q: %w", ErrInvalidInput, db.Name, err)
		}
		switch {
		case p.partition == "":
			p.partition = part
		case p.partition != part:
			return fmt.Errorf("%w: database %q is in partition %s but others are in %s; IAM is separate per partition, so plan each partition separately", ErrInvalidInput, db.Name, part, p.partition)
		}
		switch {
		case p.account == "":
			p.account = db.AccountID
		case p.account != db.AccountID:
			return fmt.Errorf("%w: database %q is in account %s, not %s; IAM database authentication only honours policies in the database's own account, so plan each account separately (filter the inventory by account)", ErrInvalidInput, db.Name, db.AccountID, p.account)
		}
	}
	if p.partition == "" {
		p.partition = PartitionAWS
	}
	if err := ValidateAccountID(p.account); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if t.Kind == PrincipalUser {
		p.baseARN = UserARN(p.partition, p.account, t.Path, t.Name)
	} else {
		p.baseARN = RoleARN(p.partition, p.account, t.Path, t.Name)
	}
	p.shardPath = ShardRolePath(t.Name)
	p.assumePattern = RoleARN(p.partition, p.account, p.shardPath, "*")

	p.baseSlots = 1 + attached - t.ReservedManaged
	p.shardSlots = 1 + p.q.AttachedPoliciesPerRole
	n := p.baseSlots + t.MaxShardRoles*p.shardSlots
	p.bins = make([]bin, n)
	p.tree = newFitTree(n)
	connectSkel := skeletonSize(false, true)
	for id := range p.bins {
		b := &p.bins[id]
		b.principal, b.slot = p.locate(id)
		var quota, skel int
		switch {
		case b.slot > 0:
			quota, skel = p.q.PolicySize, connectSkel
		case b.principal == 0:
			quota = inlineQuota - t.ReservedInline
			skel = skeletonSize(t.MaxShardRoles > 0, true)
			if t.MaxShardRoles > 0 {
				skel += len(p.assumePattern)
			}
		default:
			quota, skel = p.q.RolePolicySize, connectSkel
		}
		// A Resource list of n grants costs sum(cost) - 1 characters more
		// than the skeleton with an empty list.
		b.capacity = max(0, quota-skel+1)
	}
	if t.MaxShardRoles > 0 && inlineQuota-t.ReservedInline < skeletonSize(true, false)+len(p.assumePattern) {
		return &NoFitError{Msg: fmt.Sprintf("the %s %q has %d inline characters left after --reserved-inline %d, too few for the statement that lets it assume its shard roles; free inline space or forbid shard roles", t.Kind, t.Name, inlineQuota-t.ReservedInline, t.ReservedInline)}
	}
	return nil
}

// locate maps a bin id to its principal and slot.
func (p *planner) locate(id int) (principal, slot int) {
	if id < p.baseSlots {
		return 0, id
	}
	id -= p.baseSlots
	return 1 + id/p.shardSlots, id % p.shardSlots
}

func (p *planner) binID(principal, slot int) int {
	if principal == 0 {
		return slot
	}
	return p.baseSlots + (principal-1)*p.shardSlots + slot
}

// skeletonSize is the size of a document whose connect statement has an
// empty Resource list, optionally after the assume-role statement (without
// its resource, which the caller adds).
func skeletonSize(assume, connect bool) int {
	d := &Document{Version: PolicyVersion}
	if assume {
		d.Statements = append(d.Statements, assumeStatement(""))
	}
	if connect {
		d.Statements = append(d.Statements, connectStatement([]string{}))
	}
	return len(d.JSON())
}

func connectStatement(arns []string) Statement {
	return Statement{Effect: Allow, Action: One(connectAction), Resource: Values{List: arns}}
}

func assumeStatement(pattern string) Statement {
	return Statement{Effect: Allow, Action: One(assumeAction), Resource: One(pattern)}
}

func shardRoleName(prefix string, n int) string { return fmt.Sprintf("%s%03d", prefix, n) }

func managedPolicyName(principal string, slot int) string {
	return fmt.Sprintf("%s-connect-%02d", principal, slot)
}

func (p *planner) principalName(principal int) string {
	if principal == 0 {
		return p.t.Name
	}
	return shardRoleName(p.t.ShardRolePrefix, principal)
}

func (p *planner) buildGrants() {
	dbs := p.in.Inventory.Databases
	byKey := make(map[string]int, len(dbs))
	users := make([]map[string]bool, 0, len(dbs))
	type ref struct{ region, id string }
	var refs []ref
	for _, db := range dbs {
		key := db.Region + "/" + db.ResourceID
		i, ok := byKey[key]
		if !ok {
			i = len(p.grants)
			byKey[key] = i
			p.grants = append(p.grants, grant{key: key, prevBin: -1, bin: -1})
			users = append(users, map[string]bool{})
			refs = append(refs, ref{db.Region, db.ResourceID})
		}
		p.grants[i].names = append(p.grants[i].names, db.Name)
		for _, u := range db.DBUsers {
			users[i][u] = true
		}
	}
	for i := range p.grants {
		g := &p.grants[i]
		sort.Strings(g.names)
		list := make([]string, 0, len(users[i]))
		if users[i]["*"] {
			list = append(list, "*")
		} else {
			for u := range users[i] {
				list = append(list, u)
			}
			sort.Strings(list)
		}
		g.arns = make([]string, len(list))
		for j, u := range list {
			g.arns[j] = DBUserARN{Partition: p.partition, Region: refs[i].region, AccountID: p.account, ResourceID: refs[i].id, DBUser: u}.String()
			g.cost += len(g.arns[j]) + 3
		}
	}
	sort.Slice(p.grants, func(i, j int) bool { return p.grants[i].arns[0] < p.grants[j].arns[0] })
}

// readPrevious maps the previous plan's documents onto this plan's bins.
func (p *planner) readPrevious() error {
	prev := p.in.Previous
	if prev == nil {
		return nil
	}
	if prev.FormatVersion > PlanFormatVersion {
		return fmt.Errorf("%w: the previous plan has format version %d, newer than this rdsgate understands (%d); upgrade rdsgate", ErrInvalidInput, prev.FormatVersion, PlanFormatVersion)
	}
	if prev.AccountID != "" && prev.AccountID != p.account {
		return fmt.Errorf("%w: the previous plan is for account %s, this inventory for %s; a plan serves one account", ErrInvalidInput, prev.AccountID, p.account)
	}
	p.prevPrincipals = map[string]*PlanPrincipal{}
	byName := map[string]int{}
	byARN := map[string]int{}
	for pi := range prev.Principals {
		pp := &prev.Principals[pi]
		p.prevPrincipals[string(pp.Kind)+"/"+pp.Name] = pp
		principal := p.principalIndex(pp)
		docs := make([]*prevDoc, 0, len(pp.InlinePolicies)+len(pp.ManagedPolicies))
		for _, pol := range pp.InlinePolicies {
			slot := -1
			if pol.Name == InlinePolicyName {
				slot = 0
			}
			docs = append(docs, &prevDoc{principal: *pp, policy: pol, bin: p.prevBinID(principal, slot)})
		}
		for _, pol := range pp.ManagedPolicies {
			slot := -1
			if n, ok := strings.CutPrefix(pol.Name, pp.Name+"-connect-"); ok && pol.Path == ManagedPolicyPath {
				if v, err := strconv.Atoi(n); err == nil && managedPolicyName(pp.Name, v) == pol.Name && v > 0 {
					slot = v
				}
			}
			docs = append(docs, &prevDoc{principal: *pp, policy: pol, managed: true, bin: p.prevBinID(principal, slot)})
		}
		for _, d := range docs {
			d.arns = map[string]bool{}
			if d.policy.Document == nil {
				return fmt.Errorf("%w: the previous plan's policy %s of %s has no document", ErrInvalidInput, d.policy.Name, pp.Name)
			}
			for _, st := range d.policy.Document.Statements {
				if st.Effect == Allow && slices.Contains(st.Action.List, connectAction) {
					for _, r := range st.Resource.List {
						d.arns[r] = true
						if d.bin >= 0 {
							if _, ok := byARN[r]; !ok {
								byARN[r] = d.bin
							}
						}
					}
				}
			}
			if d.bin >= 0 {
				for _, n := range d.policy.Databases {
					if _, ok := byName[n]; !ok {
						byName[n] = d.bin
					}
				}
			}
			p.prev = append(p.prev, d)
		}
	}
	for i := range p.grants {
		g := &p.grants[i]
		g.prevBin = -1
		for _, n := range g.names {
			if b, ok := byName[n]; ok && (g.prevBin < 0 || b < g.prevBin) {
				g.prevBin = b
			}
		}
		if g.prevBin < 0 {
			// A renamed database keeps its place through its resource ARN.
			for _, a := range g.arns {
				if b, ok := byARN[a]; ok {
					g.prevBin = b
					break
				}
			}
		}
	}
	prevARNs := make([]map[string]bool, len(p.bins))
	for _, d := range p.prev {
		if d.bin >= 0 {
			prevARNs[d.bin] = d.arns
		}
	}
	for i := range p.grants {
		g := &p.grants[i]
		if g.prevBin < 0 {
			continue
		}
		for _, a := range g.arns {
			if !prevARNs[g.prevBin][a] {
				g.grew = true
				break
			}
		}
	}
	return nil
}

// principalIndex is the bin principal a previous principal maps to, or -1.
func (p *planner) principalIndex(pp *PlanPrincipal) int {
	if pp.Kind == p.t.Kind && pp.Name == p.t.Name && !pp.Shard {
		return 0
	}
	if pp.Kind != PrincipalRole || !pp.Shard {
		return -1
	}
	n, ok := strings.CutPrefix(pp.Name, p.t.ShardRolePrefix)
	if !ok {
		return -1
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 || v > p.t.MaxShardRoles || shardRoleName(p.t.ShardRolePrefix, v) != pp.Name {
		return -1
	}
	return v
}

func (p *planner) prevBinID(principal, slot int) int {
	if principal < 0 || slot < 0 {
		return -1
	}
	if principal == 0 && slot >= p.baseSlots || principal > 0 && slot >= p.shardSlots {
		return -1
	}
	id := p.binID(principal, slot)
	if p.bins[id].capacity == 0 {
		return -1
	}
	return id
}

func (p *planner) assign(gi, id int) {
	g := &p.grants[gi]
	b := &p.bins[id]
	g.bin = id
	b.grants = append(b.grants, gi)
	b.used += g.cost
	p.refresh(id)
}

// refresh records a bin's room in the fit tree, which holds only documents
// that exist and may gain: holes to fill before opening new documents.
func (p *planner) refresh(id int) {
	b := &p.bins[id]
	if b.source || len(b.grants) == 0 {
		p.tree.set(id, -1)
		return
	}
	p.tree.set(id, b.capacity-b.used)
}

// keep puts every grant back where the previous plan had it, then evicts
// from documents that no longer fit: grants that grew first, then the
// largest, so the fewest databases move.
func (p *planner) keep() {
	for gi := range p.grants {
		if b := p.grants[gi].prevBin; b >= 0 {
			p.assign(gi, b)
		}
	}
	for id := range p.bins {
		b := &p.bins[id]
		if b.used <= b.capacity {
			continue
		}
		order := slices.Clone(b.grants)
		sort.Slice(order, func(i, j int) bool {
			gi, gj := &p.grants[order[i]], &p.grants[order[j]]
			if gi.grew != gj.grew {
				return gi.grew
			}
			if gi.cost != gj.cost {
				return gi.cost > gj.cost
			}
			return gi.key > gj.key
		})
		evicted := map[int]bool{}
		for _, gi := range order {
			if b.used <= b.capacity {
				break
			}
			evicted[gi] = true
			b.used -= p.grants[gi].cost
			p.grants[gi].bin = -1
		}
		b.grants = slices.DeleteFunc(b.grants, func(gi int) bool { return evicted[gi] })
		b.source = true
		p.refresh(id)
	}
}

// place puts every grant without a document somewhere: first into the holes
// of documents that already exist (largest grants first), then into new
// documents filled in layout order. It never adds to a document that is
// giving grants away.
func (p *planner) place() error {
	var pending []int
	for gi := range p.grants {
		if p.grants[gi].bin < 0 {
			pending = append(pending, gi)
		}
	}
	sort.Slice(pending, func(i, j int) bool {
		gi, gj := &p.grants[pending[i]], &p.grants[pending[j]]
		if gi.cost != gj.cost {
			return gi.cost > gj.cost
		}
		return gi.key < gj.key
	})
	rest := pending[:0]
	for _, gi := range pending {
		if id := p.tree.first(p.grants[gi].cost); id >= 0 {
			p.assign(gi, id)
			p.bins[id].sink = true
		} else {
			rest = append(rest, gi)
		}
	}
	return p.fillEmpty(rest)
}

// costClass is every pending grant of one cost, in ARN order.
type costClass struct {
	cost   int
	grants []int
}

// fillEmpty fills empty documents in layout order. Each is filled greedily
// with the largest grants, then its last stretch is solved exactly: the
// smallest grants taken are put back and a bounded knapsack over the grant
// sizes picks the combination that comes closest to the quota. Documents end
// nearly full, so the plan stays within a document of the lower bound even at
// 100k databases.
func (p *planner) fillEmpty(pending []int) error {
	if len(pending) == 0 {
		return nil
	}
	var classes []costClass
	for _, gi := range pending {
		c := p.grants[gi].cost
		if n := len(classes); n > 0 && classes[n-1].cost == c {
			classes[n-1].grants = append(classes[n-1].grants, gi)
		} else {
			classes = append(classes, costClass{cost: c, grants: []int{gi}})
		}
	}
	for i := range classes {
		sort.Ints(classes[i].grants)
	}
	left := len(pending)
	var ks knapsack
	for id := range p.bins {
		if left == 0 {
			break
		}
		b := &p.bins[id]
		if b.source || len(b.grants) > 0 || b.capacity == 0 {
			continue
		}
		for ci, k := range ks.fill(classes, b.capacity) {
			for range k {
				p.assign(classes[ci].grants[0], id)
				classes[ci].grants = classes[ci].grants[1:]
				left--
			}
		}
		if len(b.grants) > 0 {
			b.sink = true
		}
	}
	for _, c := range classes {
		if len(c.grants) > 0 {
			return p.noFit(c.grants[0])
		}
	}
	return nil
}

// knapsack keeps its buffers between documents.
type knapsack struct {
	take, from, used []int
}

// tailWindow is how many characters at the end of a document are chosen
// exactly rather than greedily.
const tailWindow = 1024

// fill returns how many grants of each class go into a document of the given
// capacity.
func (k *knapsack) fill(classes []costClass, capacity int) []int {
	k.take = resize(k.take, len(classes))
	r := capacity
	largest := 0
	for i, c := range classes {
		avail := len(c.grants)
		if avail == 0 {
			continue
		}
		largest = max(largest, c.cost)
		if c.cost <= r {
			n := min(avail, r/c.cost)
			k.take[i] = n
			r -= n * c.cost
		}
	}
	if r == 0 {
		return k.take
	}
	window := max(tailWindow, 2*largest)
	freed := 0
	for i := len(classes) - 1; i >= 0 && freed < window; i-- {
		for k.take[i] > 0 && freed < window {
			k.take[i]--
			freed += classes[i].cost
		}
	}
	s := min(r+freed, capacity)
	k.from = resize(k.from, s+1)
	k.used = resize(k.used, s+1)
	for i := range k.from {
		k.from[i] = -1
	}
	k.from[0] = len(classes)
	for i, c := range classes {
		avail := len(c.grants) - k.take[i]
		if avail <= 0 || c.cost > s {
			continue
		}
		clear(k.used)
		for x := c.cost; x <= s; x++ {
			if k.from[x] == -1 && k.from[x-c.cost] != -1 && k.used[x-c.cost] < avail {
				k.from[x] = i
				k.used[x] = k.used[x-c.cost] + 1
			}
		}
	}
	best := s
	for k.from[best] == -1 {
		best--
	}
	for best > 0 {
		i := k.from[best]
		k.take[i]++
		best -= classes[i].cost
	}
	return k.take
}

func resize(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	s = s[:n]
	clear(s)
	return s
}

func (p *planner) noFit(gi int) error {
	g := &p.grants[gi]
	largest := 0
	for _, b := range p.bins {
		largest = max(largest, b.capacity)
	}
	largest = max(largest, p.q.RolePolicySize)
	if g.cost > largest {
		return &NoFitError{Msg: fmt.Sprintf("database %s needs %d characters of policy for its %d db_users, more than the largest policy document holds; allow fewer db_users on it, or \"*\"", quoteList(g.names), g.cost, len(g.arns))}
	}
	total := 0
	for _, gr := range p.grants {
		total += gr.cost
	}
	capacity := 0
	for _, b := range p.bins {
		capacity += b.capacity
	}
	t := p.t
	var b strings.Builder
	fmt.Fprintf(&b, "cannot fit %s: their permissions need %d characters of policy, and the %s %q", Count(len(p.in.Inventory.Databases), "database"), total, t.Kind, t.Name)
	if t.MaxShardRoles > 0 {
		fmt.Fprintf(&b, " with %d shard roles", t.MaxShardRoles)
	}
	fmt.Fprintf(&b, " can hold about %d (inline %d, %d managed policies of %d each", capacity, p.q.inlineSize(t.Kind)-t.ReservedInline, p.baseSlots-1, p.q.PolicySize)
	if t.MaxShardRoles > 0 {
		fmt.Fprintf(&b, ", and per shard role inline %d and %d managed", p.q.RolePolicySize, p.shardSlots-1)
	}
	b.WriteString("). To fix:")
	if t.MaxShardRoles == 0 {
		fmt.Fprintf(&b, " allow shard roles that the %s assumes (--max-shard-roles);", t.Kind)
	} else {
		b.WriteString(" allow more shard roles (--max-shard-roles, raising the account's role quota if needed);")
	}
	fmt.Fprintf(&b, " raise the managed policy attachment quota (--max-managed, up to 20 after an AWS quota increase);")
	if t.ReservedInline > 0 || t.ReservedManaged > 0 {
		b.WriteString(" free the inline or managed space other policies use (--reserved-inline, --reserved-managed);")
	}
	b.WriteString(" or split the inventory.")
	return &NoFitError{Msg: b.String()}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func (p *planner) usedBins() int {
	n := 0
	for _, b := range p.bins {
		if len(b.grants) > 0 {
			n++
		}
	}
	return n
}

// lowerBound is the fewest documents that could hold every grant when
// principals are filled in order: the larger of the character bound (fluid
// grants) and the count bound (each document holds at most as many grants as
// its smallest ones fit).
func (p *planner) lowerBound() int {
	if len(p.grants) == 0 {
		return 0
	}
	costs := make([]int, len(p.grants))
	total := 0
	for i, g := range p.grants {
		costs[i] = g.cost
		total += g.cost
	}
	sort.Ints(costs)
	prefix := make([]int, len(costs)+1)
	for i, c := range costs {
		prefix[i+1] = prefix[i] + c
	}
	byChars, byCount := -1, -1
	sumCap, sumCount, docs := 0, 0, 0
	for _, b := range p.bins {
		if b.capacity < costs[0] {
			continue
		}
		docs++
		sumCap += b.capacity
		// The most grants this document can hold are the smallest ones.
		sumCount += sort.Search(len(prefix), func(k int) bool { return prefix[k] > b.capacity }) - 1
		if byChars < 0 && sumCap >= total {
			byChars = docs
		}
		if byCount < 0 && sumCount >= len(costs) {
			byCount = docs
		}
		if byChars >= 0 && byCount >= 0 {
			break
		}
	}
	return max(byChars, byCount)
}

// compact empties the least-filled documents into others while the plan uses
// more than target documents; each drain moves one document's worth of
// databases, or none when they do not fit elsewhere.
func (p *planner) compact(target int) {
	tried := map[int]bool{}
	for p.usedBins() > target {
		victim := -1
		for id := range p.bins {
			b := &p.bins[id]
			if len(b.grants) == 0 || b.sink || b.source || tried[id] {
				continue
			}
			// The emptiest document moves the fewest databases; on a tie the
			// later one, so trailing shard roles empty out first.
			if victim < 0 || b.used <= p.bins[victim].used {
				victim = id
			}
		}
		if victim < 0 {
			return
		}
		tried[victim] = true
		p.drain(victim)
	}
}

// drain moves every grant of one document elsewhere, or nothing at all.
func (p *planner) drain(id int) bool {
	b := &p.bins[id]
	b.source = true
	p.refresh(id)
	moving := slices.Clone(b.grants)
	sort.Slice(moving, func(i, j int) bool {
		gi, gj := &p.grants[moving[i]], &p.grants[moving[j]]
		if gi.cost != gj.cost {
			return gi.cost > gj.cost
		}
		return gi.key < gj.key
	})
	type move struct{ gi, to int }
	var done []move
	wasSink := map[int]bool{}
	for _, gi := range moving {
		to := p.tree.first(p.grants[gi].cost)
		if to < 0 {
			for _, m := range done {
				t := &p.bins[m.to]
				t.used -= p.grants[m.gi].cost
				t.grants = t.grants[:len(t.grants)-1]
				t.sink = wasSink[m.to]
				p.refresh(m.to)
				p.grants[m.gi].bin = id
			}
			b.source = false
			p.refresh(id)
			return false
		}
		if _, seen := wasSink[to]; !seen {
			wasSink[to] = p.bins[to].sink
		}
		t := &p.bins[to]
		t.grants = append(t.grants, gi)
		t.used += p.grants[gi].cost
		t.sink = true
		p.refresh(to)
		p.grants[gi].bin = to
		done = append(done, move{gi, to})
	}
	b.grants = nil
	b.used = 0
	return true
}

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
