package policies

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
// holds now) to next in an order that never leaves a gap in access (see
// Schedule): roles are created first, documents are written as soon as
// nothing they take away is left ungranted, cycles of databases changing
// places are broken with interim or temporary documents, and roles are
// deleted last. Documents that mean the same (Equivalent) are not rewritten,
// so a second apply makes no write.
func Diff(prev, next *Plan) ([]Step, error) {
	ws, err := Schedule(ScheduleInput{Current: prev, Desired: next})
	if err != nil {
		return nil, err
	}
	return ws.Steps, nil
}
