package bootstrap

import (
	"context"

	"github.com/rdsgate/rdsgate/policies"
)

// PlanAgainstAWS plans the input with what IAM holds now as the previous
// plan, so databases stay where AWS has them and the steps are the writes
// IAM needs. in.Previous is ignored.
func PlanAgainstAWS(ctx context.Context, c *Clients, in policies.PlanInput) (*policies.Plan, *Observed, error) {
	in.Previous = nil
	fresh, err := policies.NewPlan(in)
	if err != nil {
		return nil, nil, err
	}
	c.UseIAMRegion(fresh.Partition)
	obs, err := ReadState(ctx, c.IAM, fresh)
	if err != nil {
		return nil, nil, err
	}
	in.Previous = obs.Plan
	plan, err := policies.NewPlan(in)
	if err != nil {
		return nil, nil, err
	}
	return plan, obs, nil
}
