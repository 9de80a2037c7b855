package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
	"github.com/rdsgate/rdsgate/test/iamcheck/planworld"
	"github.com/rdsgate/rdsgate/test/iamfake"
)

// fakeClients runs bootstrap against an in-memory IAM.
func fakeClients(f *iamfake.IAM) *Clients {
	return &Clients{Config: aws.Config{Region: "us-east-1"}, IAM: f, Calls: &CallLog{}, LeaseSettle: -1}
}

// worldOfFake is what the fake holds, in the independent model.
func worldOfFake(f *iamfake.IAM, base, externalID string) *iamcheck.World {
	w := iamcheck.New(base, externalID, iamcheck.Quotas{})
	f.Snapshot(func(ps []*iamfake.Principal, docs map[string]string) {
		for _, p := range ps {
			wp := w.Principal(p.Kind, p.Name, p.ARN)
			wp.Trust = p.Trust
			for k, v := range p.Inline {
				wp.Inline[k] = v
			}
			for _, arn := range p.Attached {
				wp.Managed[arn] = docs[arn]
			}
		}
	})
	return w
}

type fleetGen struct {
	r    *rand.Rand
	next int
}

func (g *fleetGen) users() []string {
	switch g.r.IntN(4) {
	case 0:
		return []string{"*"}
	case 1:
		return []string{"app"}
	case 2:
		return []string{"app", "readonly"}
	}
	return []string{"readonly", "migrator_with_a_long_name"}
}

func (g *fleetGen) db() policies.Database {
	g.next++
	return policies.Database{Name: fmt.Sprintf("db%04d", g.next), Engine: policies.EnginePostgres, Kind: policies.KindInstance,
		ResourceID: fmt.Sprintf("db-%026d", g.next), Region: []string{"us-east-1", "eu-west-1"}[g.r.IntN(2)], AccountID: account, DBUsers: g.users()}
}

func (g *fleetGen) fleet(n int) *policies.Inventory {
	inv := &policies.Inventory{}
	for range n {
		inv.Databases = append(inv.Databases, g.db())
	}
	return inv
}

func (g *fleetGen) change(inv *policies.Inventory) *policies.Inventory {
	out := &policies.Inventory{}
	for _, db := range inv.Databases {
		switch g.r.IntN(6) {
		case 0:
		case 1:
			db.DBUsers = g.users()
			out.Databases = append(out.Databases, db)
		default:
			out.Databases = append(out.Databases, db)
		}
	}
	for range g.r.IntN(len(inv.Databases)/2 + 3) {
		out.Databases = append(out.Databases, g.db())
	}
	return out
}

// TestApplyPropertyNoGap runs ApplyPlan itself (ReadState, the schedule, the
// executor) against an in-memory IAM that enforces IAM's quotas, starting
// from random states: a plan applied whole, or an apply of another plan
// interrupted after a random number of writes. After every single write the
// independent model must still allow every database user that both the
// starting state and the desired plan allow.
func TestApplyPropertyNoGap(t *testing.T) {
	t.Parallel()
	cases := 1000
	if testing.Short() || raceEnabled {
		cases = 60
	}
	var ran, refused, interrupted, interim, temporary int
	for seed := range uint64(cases) {
		r := rand.New(rand.NewPCG(seed, 23))
		g := &fleetGen{r: r}
		f := iamfake.New(account)
		f.Quotas.PolicySize = 500 + r.IntN(1500)
		f.Quotas.RolePolicySize = 600 + r.IntN(2000)
		f.Quotas.UserPolicySize = 400 + r.IntN(1200)
		f.Quotas.AttachedPerRole = 1 + r.IntN(4)
		f.Quotas.AttachedPerUser = 1 + r.IntN(4)
		kind, name := policies.PrincipalRole, "proxy"
		if r.IntN(3) == 0 {
			kind, name = policies.PrincipalUser, "alice"
			f.AddUser(name)
		} else if _, err := f.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)}); err != nil {
			t.Fatal(err)
		}
		c := fakeClients(f)
		q := policies.DefaultQuotas()
		q.PolicySize, q.RolePolicySize, q.UserPolicySize = f.Quotas.PolicySize, f.Quotas.RolePolicySize, f.Quotas.UserPolicySize
		q.AttachedPoliciesPerRole, q.AttachedPoliciesPerUser = f.Quotas.AttachedPerRole, f.Quotas.AttachedPerUser
		mkPlan := func(inv *policies.Inventory, prev *policies.Plan, maxShards int, slots int) (*policies.Plan, error) {
			pq := q
			pq.AttachedPoliciesPerRole = min(pq.AttachedPoliciesPerRole, slots)
			pq.AttachedPoliciesPerUser = min(pq.AttachedPoliciesPerUser, slots)
			return policies.NewPlan(policies.PlanInput{Inventory: inv, Quotas: pq, Previous: prev,
				Target: policies.Target{Kind: kind, Name: name, AccountID: account, MaxShardRoles: maxShards}})
		}
		inv1 := g.fleet(r.IntN(50))
		first, err := mkPlan(inv1, nil, r.IntN(5), r.IntN(4))
		if err != nil {
			continue
		}
		if _, err := ApplyPlan(context.Background(), c, first, ApplyOptions{}); err != nil {
			t.Fatalf("seed %d: first apply: %v", seed, err)
		}
		// Sometimes start from an apply of another plan that stopped halfway.
		if r.IntN(3) == 0 {
			other, err := mkPlan(g.change(g.fleet(r.IntN(40))), nil, r.IntN(5), r.IntN(4))
			if err == nil {
				stopAt := f.Writes() + 1 + r.IntN(8)
				ctx, cancel := context.WithCancel(context.Background())
				f.OnWrite = func(string) {
					if f.Writes() >= stopAt {
						cancel()
					}
				}
				_, err := ApplyPlan(ctx, c, other, ApplyOptions{})
				f.OnWrite = nil
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrPreflight) {
					t.Fatalf("seed %d: interrupted apply: %v", seed, err)
				}
				interrupted++
			}
		}
		var prev *policies.Plan
		if r.IntN(2) == 0 {
			prev = first
		}
		desired, err := mkPlan(g.change(inv1), prev, r.IntN(5), r.IntN(4))
		if err != nil {
			continue
		}
		before := worldOfFake(f, desired.Base.ARN, "")
		after := planworld.Add(worldOfFake(iamfake.New(account), desired.Base.ARN, ""), desired)
		survivors := iamcheck.Survivors(before, after)
		var gap error
		writes := 0
		f.OnWrite = func(op string) {
			writes++
			if gap != nil {
				return
			}
			if missing := worldOfFake(f, desired.Base.ARN, "").Missing(survivors); len(missing) > 0 {
				gap = fmt.Errorf("after write %d (%s): %d requests allowed before and after are allowed by nothing, first %s", writes, op, len(missing), missing[0])
			}
		}
		rep, err := ApplyPlan(context.Background(), c, desired, ApplyOptions{})
		f.OnWrite = nil
		if gap != nil {
			t.Fatalf("seed %d: gap in access: %v", seed, gap)
		}
		if err != nil {
			var ge *policies.GapError
			if errors.As(err, &ge) && errors.Is(err, ErrPreflight) && writes == 0 {
				refused++
				continue
			}
			t.Fatalf("seed %d: apply: %v", seed, err)
		}
		ran++
		interim += rep.Interim
		temporary += rep.Temporary
		// IAM holds the plan: nothing left to write, no temporary document.
		obs, err := ReadState(context.Background(), f, desired)
		if err != nil {
			t.Fatal(err)
		}
		if steps, err := policies.Diff(obs.Plan, desired); err != nil || len(steps) != 0 {
			t.Fatalf("seed %d: after apply IAM differs from the plan: %v %+v", seed, err, steps)
		}
		if missing := worldOfFake(f, desired.Base.ARN, "").Missing(iamcheck.Concrete(after.Resources())); len(missing) > 0 {
			t.Fatalf("seed %d: after apply %s is not allowed", seed, missing[0])
		}
		for _, p := range obs.Principals {
			for n := range p.Inline {
				if policies.IsParkInline(n) {
					t.Fatalf("seed %d: temporary policy %s left on %s", seed, n, p.Name)
				}
			}
		}
	}
	if ran < cases/2 {
		t.Fatalf("only %d of %d cases applied", ran, cases)
	}
	if refused*20 > ran {
		t.Fatalf("%d of %d applies refused", refused, ran+refused)
	}
	t.Logf("%d applies without a gap (%d from an interrupted apply), %d refused before writing; %d interim writes, %d temporary documents",
		ran, interrupted, refused, interim, temporary)
}
