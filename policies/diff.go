package policies

import (
	"slices"
)

type docKey struct {
	principal string
	managed   bool
	policy    string
}

// planDoc is one document of a plan with where it lives.
type planDoc struct {
	key       docKey
	principal *PlanPrincipal
	policy    *PlanPolicy
}

// documentsOf lists a plan's documents in plan order.
func documentsOf(p *Plan) []planDoc {
	var out []planDoc
	if p == nil {
		return nil
	}
	for i := range p.Principals {
		pp := &p.Principals[i]
		for j := range pp.InlinePolicies {
			out = append(out, planDoc{docKey{pp.Name, false, pp.InlinePolicies[j].Name}, pp, &pp.InlinePolicies[j]})
		}
		for j := range pp.ManagedPolicies {
			out = append(out, planDoc{docKey{pp.Name, true, pp.ManagedPolicies[j].Name}, pp, &pp.ManagedPolicies[j]})
		}
	}
	return out
}

// placement maps each database name to the document that holds it.
func placement(docs []planDoc) map[string]docKey {
	at := map[string]docKey{}
	for _, d := range docs {
		for _, n := range d.policy.Databases {
			at[n] = d.key
		}
	}
	return at
}

// Diff lists the writes that take IAM from prev (a previous plan, or what AWS
// holds now) to next, in an order that never leaves a gap in access: roles
// are created first, then every document that grants something new, then
// every document that only takes away or gives a database to another, then
// deletions, and roles last. Documents that mean the same (Equivalent) are
// not rewritten, so a second apply makes no write.
func Diff(prev, next *Plan) []Step {
	old := map[docKey]planDoc{}
	for _, d := range documentsOf(prev) {
		old[d.key] = d
	}
	oldPrincipals := map[string]*PlanPrincipal{}
	if prev != nil {
		for i := range prev.Principals {
			pp := &prev.Principals[i]
			oldPrincipals[string(pp.Kind)+"/"+pp.Name] = pp
		}
	}
	inPlan := map[string]bool{}
	for _, pp := range next.Principals {
		for _, n := range pp.Databases {
			inPlan[n] = true
		}
	}
	var prepare, grant, revoke, deletes, cleanup []Step
	current := map[docKey]bool{}
	principals := map[string]bool{}
	for _, pp := range next.Principals {
		principals[string(pp.Kind)+"/"+pp.Name] = true
		if pp.Shard {
			was := oldPrincipals[string(pp.Kind)+"/"+pp.Name]
			switch {
			case was == nil:
				prepare = append(prepare, Step{Phase: PhasePrepare, Action: ActionCreateRole, Kind: pp.Kind, Principal: pp.Name})
			case was.TrustPolicy == nil || !Equivalent(was.TrustPolicy, pp.TrustPolicy) || was.MaxSessionDuration != pp.MaxSessionDuration:
				prepare = append(prepare, Step{Phase: PhasePrepare, Action: ActionUpdateTrust, Kind: pp.Kind, Principal: pp.Name})
			}
		}
	}
	for _, d := range documentsOf(next) {
		current[d.key] = true
		was, existed := old[d.key]
		if existed && Equivalent(was.policy.Document, d.policy.Document) {
			continue
		}
		action := ActionPutInline
		if d.key.managed {
			action = ActionPutManaged
		}
		st := Step{Phase: PhaseGrant, Action: action, Kind: d.principal.Kind, Principal: d.principal.Name, Policy: d.policy.Name}
		if !existed {
			st.Adds = d.policy.Databases
		} else {
			st.Adds = difference(d.policy.Databases, was.policy.Databases)
			st.Removes = difference(was.policy.Databases, d.policy.Databases)
			// A document that gives a database to another one is written
			// only after every grant, even when it also gains a user: the
			// database must be in its new place first.
			givesAway := slices.ContainsFunc(st.Removes, func(n string) bool { return inPlan[n] })
			if givesAway || len(st.Adds) == 0 && !grantsMore(d.policy.Document, was.policy.Document) {
				st.Phase = PhaseRevoke
			}
		}
		if st.Phase == PhaseGrant {
			grant = append(grant, st)
		} else {
			revoke = append(revoke, st)
		}
	}
	for _, d := range documentsOf(prev) {
		if current[d.key] {
			continue
		}
		action := ActionDeleteInline
		if d.key.managed {
			action = ActionDeleteManaged
		}
		deletes = append(deletes, Step{Phase: PhaseRevoke, Action: action, Kind: d.principal.Kind, Principal: d.principal.Name, Policy: d.policy.Name, Removes: d.policy.Databases})
	}
	if prev != nil {
		for _, pp := range prev.Principals {
			if pp.Shard && !principals[string(pp.Kind)+"/"+pp.Name] {
				cleanup = append(cleanup, Step{Phase: PhaseCleanup, Action: ActionDeleteRole, Kind: pp.Kind, Principal: pp.Name})
			}
		}
	}
	steps := slices.Concat(prepare, grant, revoke, deletes, cleanup)
	if steps == nil {
		steps = []Step{}
	}
	return steps
}
