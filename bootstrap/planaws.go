package bootstrap

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/rdsgate/rdsgate/policies"
)

// ErrNoBase is returned when the base principal a plan names does not exist.
var ErrNoBase = errors.New("no such base principal")

// PlanOptions say what PlanAgainstAWS takes from the account rather than
// from the input.
type PlanOptions struct {
	// Reserve takes the base principal's reservations from what IAM holds:
	// the size of its other inline policies and the count of its other
	// managed policies. Without it the input's reservations stand.
	Reserve bool
	// Quotas takes the size and attachment quotas from
	// iam:GetAccountSummary instead of the input's.
	Quotas bool
}

// PlanAgainstAWS plans the input with what IAM holds now as the previous
// plan, so databases stay where AWS has them and the steps are the writes
// IAM needs. in.Previous is ignored. The Observed state it returns is what
// the plan was made against.
func PlanAgainstAWS(ctx context.Context, c *Clients, in policies.PlanInput, opts PlanOptions) (*policies.Plan, *Observed, error) {
	in.Previous = nil
	fresh, err := policies.NewPlan(in)
	if err != nil {
		return nil, nil, err
	}
	c.UseIAMRegion(fresh.Partition)
	if opts.Quotas {
		live, err := liveQuotas(ctx, c.IAM)
		if err != nil {
			return nil, nil, err
		}
		q := *live
		q.RoleNameLength, q.PolicyNameLength, q.PolicyVersions, q.Roles = in.Quotas.RoleNameLength, in.Quotas.PolicyNameLength, in.Quotas.PolicyVersions, in.Quotas.Roles
		in.Quotas = q
	}
	obs, err := ReadState(ctx, c.IAM, fresh)
	if err != nil {
		return nil, nil, err
	}
	if opts.Reserve {
		base := obs.Principals[fresh.Base.Name]
		other := base.Other(obs.policiesByARN())
		in.Target.ReservedInline, in.Target.ReservedManaged = other.InlineSize, other.Attached
	}
	in.Previous = obs.Plan
	plan, err := policies.NewPlan(in)
	if err != nil {
		return nil, nil, err
	}
	return plan, obs, nil
}

// liveQuotas reads the account's quotas.
func liveQuotas(ctx context.Context, api IAMAPI) (*policies.Quotas, error) {
	return checkAccountQuotas(ctx, api, nil)
}

// Reservations says, for people, what the base principal's other policies
// take of its quotas.
func (obs *Observed) Reservations(base string) (inline, managed int, names []string) {
	p := obs.Principals[base]
	if p == nil {
		return 0, 0, nil
	}
	o := p.Other(obs.policiesByARN())
	for _, n := range slices.Sorted(maps.Keys(p.Inline)) {
		if !ownInline(n) {
			names = append(names, "inline "+n)
		}
	}
	for _, arn := range p.Attached {
		if !ownManaged(p.Name, arn[strings.LastIndexByte(arn, '/')+1:]) {
			names = append(names, "managed "+arn)
		}
	}
	return o.InlineSize, o.Attached, names
}

func (obs *Observed) policiesByARN() map[string]*ObservedPolicy {
	byARN := map[string]*ObservedPolicy{}
	for _, p := range obs.Policies {
		byARN[p.ARN] = p
	}
	return byARN
}
