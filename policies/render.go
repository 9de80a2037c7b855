package policies

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// TrustPolicy is the trust policy of a shard role: the base principal may
// assume it, with the external id when one is set.
func TrustPolicy(baseARN, externalID string) *Document {
	st := Statement{
		Effect:    Allow,
		Principal: &Principal{Entries: map[string]Values{"AWS": One(baseARN)}},
		Action:    One(assumeAction),
	}
	if externalID != "" {
		st.Condition = Condition{"StringEquals": {"sts:ExternalId": One(externalID)}}
	}
	return &Document{Version: PolicyVersion, Statements: []Statement{st}}
}

func (p *planner) render(lb int) (*Plan, error) {
	t := p.t
	plan := &Plan{
		FormatVersion: PlanFormatVersion,
		Partition:     p.partition,
		AccountID:     p.account,
		Base:          PrincipalRef{Kind: t.Kind, Name: t.Name, Path: t.Path, ARN: p.baseARN},
		Settings: PlanSettings{
			MaxShardRoles:        t.MaxShardRoles,
			ShardRolePrefix:      t.ShardRolePrefix,
			ShardRolePath:        p.shardPath,
			ExternalID:           t.ExternalID,
			ReservedInline:       t.ReservedInline,
			ReservedManaged:      t.ReservedManaged,
			PolicySize:           p.q.PolicySize,
			InlineSize:           p.q.inlineSize(t.Kind),
			MaxManaged:           p.q.attached(t.Kind),
			AssumeRolePolicySize: p.q.AssumeRolePolicySize,
			ShardInlineSize:      p.q.RolePolicySize,
			ShardMaxManaged:      p.q.AttachedPoliciesPerRole,
		},
		Principals: []PlanPrincipal{},
		Steps:      []Step{},
	}
	used := map[int]bool{0: true}
	for _, b := range p.bins {
		if len(b.grants) > 0 {
			used[b.principal] = true
		}
	}
	principals := slices.Sorted(maps.Keys(used))
	hasShards := len(principals) > 1
	inlineQuota := p.q.inlineSize(t.Kind) - t.ReservedInline
	for _, pi := range principals {
		pp := PlanPrincipal{Kind: t.Kind, Name: t.Name, Path: t.Path, ARN: p.baseARN, InlinePolicies: []PlanPolicy{}, ManagedPolicies: []PlanPolicy{}}
		slots := p.baseSlots
		if pi > 0 {
			slots = p.shardSlots
			name := p.principalName(pi)
			pp = PlanPrincipal{
				Kind: PrincipalRole, Name: name, Path: p.shardPath, ARN: RoleARN(p.partition, p.account, p.shardPath, name),
				Shard: true, TrustPolicy: TrustPolicy(p.baseARN, t.ExternalID),
				MaxSessionDuration: int(RoleChainMaxSession.Seconds()),
				InlinePolicies:     []PlanPolicy{}, ManagedPolicies: []PlanPolicy{},
			}
			if size := pp.TrustPolicy.Size(); size > p.q.AssumeRolePolicySize {
				return nil, &NoFitError{Msg: fmt.Sprintf("the trust policy of %s is %d characters, over the quota of %d; use a shorter external id", name, size, p.q.AssumeRolePolicySize)}
			}
			inlineQuota = p.q.RolePolicySize
		}
		var all []string
		for slot := 0; slot < slots; slot++ {
			b := &p.bins[p.binID(pi, slot)]
			assume := pi == 0 && slot == 0 && hasShards
			if len(b.grants) == 0 && !assume {
				continue
			}
			doc := &Document{Version: PolicyVersion}
			if assume {
				doc.Statements = append(doc.Statements, assumeStatement(p.assumePattern))
			}
			var names []string
			if len(b.grants) > 0 {
				gs := slices.Clone(b.grants)
				sort.Ints(gs) // grants are sorted by ARN, so their ARNs come out sorted
				var arns []string
				for _, gi := range gs {
					arns = append(arns, p.grants[gi].arns...)
					names = append(names, p.grants[gi].names...)
				}
				doc.Statements = append(doc.Statements, connectStatement(arns))
				sort.Strings(names)
			}
			pol := PlanPolicy{Document: doc, Size: doc.Size(), Databases: nonNil(names)}
			if slot == 0 {
				pol.Name, pol.Quota = InlinePolicyName, inlineQuota
				pp.InlinePolicies = append(pp.InlinePolicies, pol)
			} else {
				pol.Name, pol.Quota = managedPolicyName(pp.Name, slot), p.q.PolicySize
				pol.Path = ManagedPolicyPath
				pol.ARN = PolicyARN(p.partition, p.account, ManagedPolicyPath, pol.Name)
				pp.ManagedPolicies = append(pp.ManagedPolicies, pol)
			}
			if pol.Size > pol.Quota {
				return nil, fmt.Errorf("policies: internal error: %s of %s is %d characters, over its quota %d", pol.Name, pp.Name, pol.Size, pol.Quota)
			}
			all = append(all, names...)
		}
		sort.Strings(all)
		pp.Databases = nonNil(all)
		plan.Principals = append(plan.Principals, pp)
	}
	where := map[string][2]string{}
	for _, d := range documentsOf(plan) {
		for _, n := range d.policy.Databases {
			where[n] = [2]string{d.principal.Name, d.policy.Name}
		}
	}
	plan.Databases = make([]PlanDatabase, 0, len(p.in.Inventory.Databases))
	for _, db := range p.in.Inventory.Databases {
		w := where[db.Name]
		plan.Databases = append(plan.Databases, PlanDatabase{Name: db.Name, Region: db.Region, ResourceID: db.ResourceID, Principal: w[0], Policy: w[1]})
	}
	sort.Slice(plan.Databases, func(i, j int) bool { return plan.Databases[i].Name < plan.Databases[j].Name })
	steps, err := Diff(p.in.Previous, plan)
	if err != nil {
		return nil, &NoFitError{Msg: "from the previous plan: " + err.Error()}
	}
	plan.Steps = steps
	plan.Stats = planStats(p.in.Previous, plan, len(p.in.Inventory.Databases), lb)
	return plan, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// difference returns the sorted elements of a that are not in b.
func difference(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func planStats(prev, plan *Plan, databases, lb int) Stats {
	s := Stats{Databases: databases, Principals: len(plan.Principals), LowerBound: lb}
	where := documentsOf(plan)
	for _, d := range where {
		s.Documents++
		s.Characters += d.policy.Size
		s.Capacity += d.policy.Quota
	}
	at := placement(where)
	if prev != nil {
		before := placement(documentsOf(prev))
		for n, k := range at {
			old, ok := before[n]
			switch {
			case !ok:
				s.Added++
			case old != k:
				s.Moved++
			}
		}
		for n := range before {
			if _, ok := at[n]; !ok {
				s.Removed++
			}
		}
	} else {
		s.Added = len(at)
	}
	for _, st := range plan.Steps {
		if st.Policy != "" {
			s.Written++
		}
	}
	return s
}
