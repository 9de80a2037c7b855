package policies

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The planner: grants built from the inventory, bins (one per document slot
// of the layout), and a previous plan read so that what it placed stays
// where it is (keep). Packing what is left is in pack.go; the plan it
// produces is in plan.go.

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
	// Redshift is reached with the Redshift APIs' credentials, which
	// print-iam grants: no rds-db:connect to plan.
	if slices.ContainsFunc(p.in.Inventory.Databases, func(d Database) bool { return d.Engine.Redshift() }) {
		inv := *p.in.Inventory
		inv.Databases = slices.DeleteFunc(slices.Clone(inv.Databases), func(d Database) bool { return d.Engine.Redshift() })
		p.in.Inventory = &inv
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
