package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rdsgate/rdsgate/policies"
)

// DriftFinding is one difference between IAM and the plan.
type DriftFinding struct {
	Principal string   `json:"principal"`
	Policy    string   `json:"policy,omitempty"`
	Problem   string   `json:"problem"`
	Added     []string `json:"added,omitempty"`   // in AWS, not in the plan
	Removed   []string `json:"removed,omitempty"` // in the plan, not in AWS
}

func (f DriftFinding) String() string {
	s := f.Principal
	if f.Policy != "" {
		s += " policy " + f.Policy
	}
	return s + ": " + f.Problem
}

// DriftReport is the outcome of a drift check.
type DriftReport struct {
	Findings []DriftFinding `json:"drift"`
	// Unjudged lists policies on the plan's principals that rdsgate does not
	// manage: listed so nothing is hidden, but they are not drift.
	Unjudged []string `json:"not_managed,omitempty"`
	// Bootstrap lists what `bootstrap create-iam` wrote on the base
	// principal (its inline policy and permissions boundary): rdsgate's,
	// but not the shard plan's, so drift of the plan does not judge them.
	Bootstrap []string `json:"bootstrap,omitempty"`
}

// Drifted reports whether IAM differs from the plan.
func (r *DriftReport) Drifted() bool { return len(r.Findings) > 0 }

// Drift compares what IAM holds with the plan by meaning: statement order,
// white space and string-or-list forms do not count; a statement added or
// removed by hand does, and so does a missing, unattached or extra document,
// role or trust relationship.
func Drift(ctx context.Context, c *Clients, desired *policies.Plan) (*DriftReport, error) {
	c.UseIAMRegion(desired.Partition)
	obs, err := ReadState(ctx, c.IAM, desired)
	if err != nil {
		return nil, err
	}
	r := &DriftReport{}
	want := map[string]bool{}
	for _, pp := range desired.Principals {
		want[pp.Name] = true
		r.principal(obs, pp)
	}
	for _, name := range slices.Sorted(maps.Keys(obs.Principals)) {
		if !want[name] {
			r.add(DriftFinding{Principal: "role " + name, Problem: "shard role made by rdsgate is not in the plan"})
		}
	}
	planned := map[string]bool{}
	for _, pp := range desired.Principals {
		for _, pol := range pp.ManagedPolicies {
			planned[pol.Name] = true
		}
	}
	for _, p := range obs.Orphans {
		if !planned[p.Name] { // planned ones were reported as not attached
			r.add(DriftFinding{Principal: "(none)", Policy: p.Name, Problem: "rdsgate managed policy is attached to nothing"})
		}
	}
	r.Unjudged = append(r.Unjudged, obs.Foreign...)
	return r, nil
}

func (r *DriftReport) add(f DriftFinding) { r.Findings = append(r.Findings, f) }

// principal compares one planned role or user with what IAM holds.
func (r *DriftReport) principal(obs *Observed, pp policies.PlanPrincipal) {
	who := fmt.Sprintf("%s %s", pp.Kind, pp.Name)
	op := obs.Principals[pp.Name]
	if op == nil {
		r.add(DriftFinding{Principal: who, Problem: "does not exist (run rdsgate shards apply)"})
		return
	}
	if pp.Shard {
		if !policies.Equivalent(op.Trust, pp.TrustPolicy) {
			in, out := PermissionDiff(pp.TrustPolicy, op.Trust)
			r.add(DriftFinding{Principal: who, Problem: "trust policy differs from the plan", Added: in, Removed: out})
		}
		if op.MaxSessionDuration != pp.MaxSessionDuration {
			r.add(DriftFinding{Principal: who, Problem: fmt.Sprintf("maximum session is %ds, the plan says %ds", op.MaxSessionDuration, pp.MaxSessionDuration)})
		}
	}
	r.inline(who, op, pp)
	r.managed(who, obs, op, pp)
	switch {
	case op.Boundary == "":
	case policies.IsBootstrapBoundary(op.Boundary, pp.Name):
		r.Bootstrap = append(r.Bootstrap, fmt.Sprintf("%s permissions boundary %s", who, op.Boundary))
	default:
		r.Unjudged = append(r.Unjudged, fmt.Sprintf("%s permissions boundary %s", who, op.Boundary))
	}
}

// inline compares a principal's inline policies with the plan's, and says
// what the ones the plan does not name are.
func (r *DriftReport) inline(who string, op *ObservedPrincipal, pp policies.PlanPrincipal) {
	planned := map[string]bool{}
	for _, pol := range pp.InlinePolicies {
		planned[pol.Name] = true
		cur := op.Inline[pol.Name]
		switch {
		case cur == nil:
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "inline policy is missing"})
		case !policies.Equivalent(cur, pol.Document):
			in, out := PermissionDiff(pol.Document, cur)
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "inline policy differs from the plan", Added: in, Removed: out})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(op.Inline)) {
		switch {
		case planned[name]:
		case policies.IsParkInline(name):
			in, _ := PermissionDiff(nil, op.Inline[name])
			r.add(DriftFinding{Principal: who, Policy: name, Problem: "temporary inline policy of an apply that stopped (run rdsgate shards apply to finish it)", Added: in})
		case name == policies.InlinePolicyName:
			in, _ := PermissionDiff(nil, op.Inline[name])
			r.add(DriftFinding{Principal: who, Policy: name, Problem: "inline policy is not in the plan", Added: in})
		case name == policies.BootstrapPolicyName:
			r.Bootstrap = append(r.Bootstrap, fmt.Sprintf("%s inline policy %s", who, name))
		default:
			r.Unjudged = append(r.Unjudged, fmt.Sprintf("%s inline policy %s", who, name))
		}
	}
}

// managed compares the managed policies attached to a principal with the
// plan's, and says what the attached ones the plan does not name are.
func (r *DriftReport) managed(who string, obs *Observed, op *ObservedPrincipal, pp policies.PlanPrincipal) {
	planned := map[string]bool{}
	for _, pol := range pp.ManagedPolicies {
		planned[pol.ARN] = true
		cur := obs.Policies[pol.Name]
		switch {
		case cur == nil:
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "managed policy does not exist"})
		case !cur.Managed():
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "managed policy exists without rdsgate's tag"})
		case !contains(op.Attached, pol.ARN):
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "managed policy is not attached"})
		case !policies.Equivalent(cur.Document, pol.Document):
			in, out := PermissionDiff(pol.Document, cur.Document)
			r.add(DriftFinding{Principal: who, Policy: pol.Name, Problem: "managed policy differs from the plan", Added: in, Removed: out})
		}
	}
	for _, arn := range op.Attached {
		if planned[arn] {
			continue
		}
		name := arn[strings.LastIndexByte(arn, '/')+1:]
		if p := obs.Policies[name]; p != nil && p.ARN == arn && p.Managed() {
			in, _ := PermissionDiff(nil, p.Document)
			r.add(DriftFinding{Principal: who, Policy: name, Problem: "managed policy is attached but not in the plan", Added: in})
			continue
		}
		r.Unjudged = append(r.Unjudged, fmt.Sprintf("%s managed policy %s", who, arn))
	}
}
