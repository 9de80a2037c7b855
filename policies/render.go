package policies

import (
	"bytes"
	"fmt"
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

type docKey struct {
	principal string
	managed   bool
	policy    string
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
	principals := sortedIntKeys(used)
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
	p.steps(plan)
	p.stats(plan, lb)
	return plan, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sortedIntKeys(m map[int]bool) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// steps lists the writes that take AWS from the previous plan to this one:
// new roles, then every document that grants something new, then every
// document that only takes away, then deletions.
func (p *planner) steps(plan *Plan) {
	prev := map[docKey]*prevDoc{}
	for _, d := range p.prev {
		prev[docKey{d.principal.Name, d.managed, d.policy.Name}] = d
	}
	inPlan := map[string]bool{}
	for _, pp := range plan.Principals {
		for _, n := range pp.Databases {
			inPlan[n] = true
		}
	}
	var grant, revoke, deletes []Step
	var prepare, cleanup []Step
	current := map[docKey]bool{}
	principals := map[string]bool{}
	for _, pp := range plan.Principals {
		principals[string(pp.Kind)+"/"+pp.Name] = true
		if pp.Shard {
			old := p.prevPrincipals[string(pp.Kind)+"/"+pp.Name]
			switch {
			case old == nil:
				prepare = append(prepare, Step{Phase: PhasePrepare, Action: ActionCreateRole, Kind: pp.Kind, Principal: pp.Name})
			case old.TrustPolicy == nil || !Equivalent(old.TrustPolicy, pp.TrustPolicy):
				prepare = append(prepare, Step{Phase: PhasePrepare, Action: ActionUpdateTrust, Kind: pp.Kind, Principal: pp.Name})
			}
		}
		for _, managed := range []bool{false, true} {
			list, action := pp.InlinePolicies, ActionPutInline
			if managed {
				list, action = pp.ManagedPolicies, ActionPutManaged
			}
			for _, pol := range list {
				key := docKey{pp.Name, managed, pol.Name}
				current[key] = true
				old := prev[key]
				if old != nil && bytes.Equal(old.policy.Document.JSON(), pol.Document.JSON()) {
					continue
				}
				st := Step{Action: action, Kind: pp.Kind, Principal: pp.Name, Policy: pol.Name, Phase: PhaseGrant}
				if old == nil {
					st.Adds = pol.Databases
				} else {
					st.Adds = difference(pol.Databases, old.policy.Databases)
					st.Removes = difference(old.policy.Databases, pol.Databases)
					// A document that gives a database to another one is
					// written only after every grant, even when it also
					// gains a user: its database must be in place first.
					givesAway := slices.ContainsFunc(st.Removes, func(n string) bool { return inPlan[n] })
					if givesAway || len(st.Adds) == 0 && !grantsMore(pol.Document, old.policy.Document) {
						st.Phase = PhaseRevoke
					}
				}
				if st.Phase == PhaseGrant {
					grant = append(grant, st)
				} else {
					revoke = append(revoke, st)
				}
			}
		}
	}
	for _, d := range p.prev {
		if current[docKey{d.principal.Name, d.managed, d.policy.Name}] {
			continue
		}
		action := ActionDeleteInline
		if d.managed {
			action = ActionDeleteManaged
		}
		deletes = append(deletes, Step{Phase: PhaseRevoke, Action: action, Kind: d.principal.Kind, Principal: d.principal.Name, Policy: d.policy.Name, Removes: d.policy.Databases})
	}
	if p.in.Previous != nil {
		for _, pp := range p.in.Previous.Principals {
			if pp.Shard && !principals[string(pp.Kind)+"/"+pp.Name] {
				cleanup = append(cleanup, Step{Phase: PhaseCleanup, Action: ActionDeleteRole, Kind: pp.Kind, Principal: pp.Name})
			}
		}
	}
	plan.Steps = slices.Concat(prepare, grant, revoke, deletes, cleanup)
	if len(plan.Steps) == 0 {
		plan.Steps = []Step{}
	}
}

// grantsMore reports whether next allows an rds-db:connect or sts:AssumeRole
// resource that prev did not.
func grantsMore(next, prev *Document) bool {
	had := map[string]bool{}
	for _, st := range prev.Statements {
		for _, a := range st.Action.List {
			for _, r := range st.Resource.List {
				had[a+" "+r] = true
			}
		}
	}
	for _, st := range next.Statements {
		for _, a := range st.Action.List {
			for _, r := range st.Resource.List {
				if !had[a+" "+r] {
					return true
				}
			}
		}
	}
	return false
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

func (p *planner) stats(plan *Plan, lb int) {
	s := Stats{Databases: len(p.in.Inventory.Databases), Principals: len(plan.Principals), LowerBound: lb}
	where := map[string]docKey{}
	for _, pp := range plan.Principals {
		for _, managed := range []bool{false, true} {
			list := pp.InlinePolicies
			if managed {
				list = pp.ManagedPolicies
			}
			for _, pol := range list {
				s.Documents++
				s.Characters += pol.Size
				s.Capacity += pol.Quota
				for _, n := range pol.Databases {
					where[n] = docKey{pp.Name, managed, pol.Name}
				}
			}
		}
	}
	if p.in.Previous != nil {
		before := map[string]docKey{}
		for _, d := range p.prev {
			for _, n := range d.policy.Databases {
				before[n] = docKey{d.principal.Name, d.managed, d.policy.Name}
			}
		}
		for n, k := range where {
			old, ok := before[n]
			switch {
			case !ok:
				s.Added++
			case old != k:
				s.Moved++
			}
		}
		for n := range before {
			if _, ok := where[n]; !ok {
				s.Removed++
			}
		}
	} else {
		s.Added = len(where)
	}
	for _, st := range plan.Steps {
		if st.Policy != "" {
			s.Written++
		}
	}
	plan.Stats = s
}
