package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
	"github.com/rdsgate/rdsgate/test/iamcheck/iamread"
	"github.com/rdsgate/rdsgate/test/iamcheck/planworld"
)

const account = testenv.AccountID

func connect(t testing.TB, url string) *Clients {
	t.Helper()
	c, err := Connect(context.Background(), Config{
		Region: "us-east-1", EndpointURL: url, MaxBackoff: 50 * time.Millisecond, LeaseSettle: 10 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createBase makes the proxy's own role, as the user (or Terraform) would.
func createBase(t testing.TB, c *Clients, name string) {
	t.Helper()
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := c.IAM.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
}

// motoWithBase is a moto of its own holding the base role "proxy", and
// clients for it.
func motoWithBase(t *testing.T) *Clients {
	t.Helper()
	c := connect(t, testenv.StartMoto(t).URL)
	createBase(t, c, "proxy")
	return c
}

func fleet(n, offset int) *policies.Inventory {
	inv := &policies.Inventory{}
	for i := range n {
		k := i + offset
		users := []string{"app", "readonly"}
		if k%3 == 0 {
			users = []string{"*"}
		}
		inv.Databases = append(inv.Databases, policies.Database{Name: fmt.Sprintf("db%05d", k), Engine: policies.EnginePostgres,
			Kind: policies.KindInstance, ResourceID: fmt.Sprintf("db-%026d", k), Region: "us-east-1", AccountID: account, DBUsers: users})
	}
	return inv
}

func plan(t testing.TB, inv *policies.Inventory, maxManaged int, prev *policies.Plan) *policies.Plan {
	t.Helper()
	q := policies.DefaultQuotas()
	q.AttachedPoliciesPerRole = maxManaged
	p, err := policies.NewPlan(policies.PlanInput{Inventory: inv, Quotas: q, Previous: prev,
		Target: policies.Target{Kind: policies.PrincipalRole, Name: "proxy", MaxShardRoles: 50}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func apply(t testing.TB, c *Clients, p *policies.Plan) *ApplyReport {
	t.Helper()
	r, err := ApplyPlan(context.Background(), c, p, ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return r
}

// assertHolds checks that IAM holds exactly the plan: nothing left to write.
func assertHolds(t testing.TB, c *Clients, p *policies.Plan) {
	t.Helper()
	obs, err := ReadState(context.Background(), c.IAM, p)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := policies.Diff(obs.Plan, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 0 {
		t.Fatalf("IAM differs from the plan by %d steps: %+v", len(steps), steps)
	}
	if len(obs.Orphans) != 0 {
		t.Fatalf("orphan policies left: %v", obs.Orphans)
	}
}

// reachable checks, through the policy evaluator on what IAM holds, that the
// base principal reaches every (database, user) in want.
func reachable(ctx context.Context, api IAMAPI, p *policies.Plan, want []string) error {
	obs, err := ReadState(ctx, api, p)
	if err != nil {
		return err
	}
	state := obs.Plan.State()
	for _, arn := range want {
		if len(state.ConnectVia(p.Base.ARN, arn, 1, nil)) == 0 {
			return fmt.Errorf("%s is unreachable", arn)
		}
	}
	return nil
}

func grantedARNs(p *policies.Plan) []string {
	var out []string
	for _, pp := range p.Principals {
		for _, pol := range append(append([]policies.PlanPolicy{}, pp.InlinePolicies...), pp.ManagedPolicies...) {
			for _, st := range pol.Document.Statements {
				if st.Action.List[0] == "rds-db:connect" {
					out = append(out, st.Resource.List...)
				}
			}
		}
	}
	return out
}

func TestApplyCreatesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	c := motoWithBase(t)
	p := plan(t, fleet(400, 0), 2, nil)
	if len(p.Principals) < 3 {
		t.Fatalf("want a plan over several roles, got %d principals", len(p.Principals))
	}
	first := apply(t, c, p)
	if first.Writes == 0 || len(first.Steps) != len(p.Steps) {
		t.Fatalf("first apply: %d writes, %d steps (plan has %d)", first.Writes, len(first.Steps), len(p.Steps))
	}
	assertHolds(t, c, p)
	if err := reachable(context.Background(), c.IAM, p, grantedARNs(p)); err != nil {
		t.Fatal(err)
	}
	// Everything rdsgate made carries its tags.
	for _, pp := range p.Principals[1:] {
		r, err := ReadPrincipal(context.Background(), c.IAM, pp.Kind, pp.Name)
		if err != nil || r == nil || !r.Managed() || r.Tags[TagBase] != p.Base.ARN || r.MaxSessionDuration != 3600 {
			t.Fatalf("shard role %s: %+v %v", pp.Name, r, err)
		}
	}
	second := apply(t, c, p)
	if second.Writes != 0 || len(second.Steps) != 0 {
		t.Fatalf("second apply made %d writes in %d steps: %+v", second.Writes, len(second.Steps), second.Steps)
	}
	t.Logf("first apply: %d calls (%d writes); second: %d calls, 0 writes", first.Calls, first.Writes, second.Calls)
}

// worldOfIAM reads what IAM holds for a plan's principals into the
// independent model, with plain IAM calls (not ReadState).
func worldOfIAM(ctx context.Context, api iamread.API, p *policies.Plan) (*iamcheck.World, error) {
	return iamread.Read(ctx, api, iamread.Principal{Kind: string(p.Base.Kind), Name: p.Base.Name, ShardPath: p.Settings.ShardRolePath, ExternalID: p.Settings.ExternalID})
}

// TestApplyNeverLeavesAGap records every write an apply makes against moto
// and, after each, reads IAM back and judges it with the independent model:
// every database user allowed before and after must be allowed at that
// moment. The second plan is made afresh (the README's tour has no
// --previous) for a changed fleet with fewer managed slots, so many
// databases change document, some of them in cycles.
func TestApplyNeverLeavesAGap(t *testing.T) {
	t.Parallel()
	for _, fresh := range []bool{true, false} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			t.Parallel()
			m := testenv.StartMoto(t)
			c := connect(t, m.URL)
			createBase(t, c, "proxy")
			before := plan(t, fleet(400, 0), 3, nil)
			apply(t, c, before)

			// A quarter of the fleet gone from the front half, new databases
			// sorting between the old ones in the back half: documents give
			// databases to their left and take them from their right.
			inv := &policies.Inventory{}
			for _, db := range fleet(400, 0).Databases {
				var k int
				fmt.Sscanf(db.Name, "db%d", &k)
				if k < 200 && k%4 == 0 {
					continue
				}
				inv.Databases = append(inv.Databases, db)
			}
			for _, db := range fleet(150, 0).Databases {
				var k int
				fmt.Sscanf(db.Name, "db%d", &k)
				db.Name, db.ResourceID = fmt.Sprintf("db%05d-new", 250+k), fmt.Sprintf("db-%025d9", 250+k)
				inv.Databases = append(inv.Databases, db)
			}
			prev := before
			if fresh {
				prev = nil
			}
			after := plan(t, inv, 1, prev)
			ctx := context.Background()
			checker := connect(t, m.URL)
			start, err := worldOfIAM(ctx, checker.IAM, after)
			if err != nil {
				t.Fatal(err)
			}
			keep := iamcheck.Survivors(start, planworld.Of(after))
			if len(keep) < 500 {
				t.Fatalf("only %d requests survive the change; the test would prove little", len(keep))
			}
			var mu sync.Mutex
			var gaps []string
			checks := 0
			c.Calls.OnCall = func(call Call) {
				if !call.Write() || call.Err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				checks++
				w, err := worldOfIAM(ctx, checker.IAM, after)
				if err != nil {
					gaps = append(gaps, fmt.Sprintf("after %s: reading IAM: %v", call.Operation, err))
					return
				}
				if missing := w.Missing(keep); len(missing) > 0 {
					gaps = append(gaps, fmt.Sprintf("after write %d (%s): %d unreachable, first %s", checks, call.Operation, len(missing), missing[0]))
				}
			}
			r := apply(t, c, after)
			c.Calls.OnCall = nil
			if len(gaps) > 0 {
				t.Fatalf("gap in access during apply (%d of %d checks):\n%s", len(gaps), checks, strings.Join(gaps, "\n"))
			}
			if checks < 10 {
				t.Fatalf("only %d writes were checked", checks)
			}
			assertHolds(t, c, after)
			t.Logf("%d writes (%d interim, %d temporary documents), each followed by a check of %d requests", r.Writes, r.Interim, r.Temporary, len(keep))
		})
	}
}

func TestApplyRetriesThrottlingAndServerErrors(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	fp := testenv.StartFaultProxy(t, m.URL)
	c := connect(t, fp.URL)
	createBase(t, c, "proxy")
	fp.Decide(func(op string, n int) *testenv.Fault {
		switch n % 4 {
		case 1:
			return testenv.Throttled
		case 2:
			if n%8 == 2 {
				return testenv.Unavailable
			}
		}
		return nil
	})
	p := plan(t, fleet(300, 0), 2, nil)
	var notes noteLog
	if _, err := ApplyPlan(context.Background(), c, p, ApplyOptions{Progress: &notes}); err != nil {
		t.Fatal(err)
	}
	if fp.Injected() < 20 {
		t.Fatalf("only %d faults injected", fp.Injected())
	}
	// The wait is not silent: every retried answer is noted.
	if n := notes.count("answered Throttling; the SDK retries"); n < 10 {
		t.Fatalf("only %d throttling notes for %d faults:\n%s", n, fp.Injected(), &notes)
	}
	// Without IAM lag, nothing waits for IAM to catch up: the wait costs
	// nothing when IAM is consistent.
	if n := notes.count("eventually consistent"); n != 0 {
		t.Fatalf("%d waits for IAM to catch up with no lag:\n%s", n, &notes)
	}
	fp.Decide(nil)
	assertHolds(t, c, p)
	t.Logf("converged through %d injected throttling and 5xx answers", fp.Injected())
}

// TestApplyInterruptedConverges stops an apply after each of its writes in
// turn, as a kill would, and runs it again: it must converge to the plan,
// and a third run must write nothing.
func TestApplyInterruptedConverges(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	c := connect(t, m.URL)
	before := plan(t, fleet(300, 0), 3, nil)
	after := plan(t, fleet(330, 30), 1, before)
	// Count the writes of an uninterrupted run.
	createBase(t, c, "proxy")
	apply(t, c, before)
	total := apply(t, c, after).Writes
	if total < 10 {
		t.Fatalf("only %d writes to interrupt", total)
	}
	for stop := 1; stop < total; stop++ {
		// Resetting moto deletes behind the clients' back; new clients do
		// not wait for roles the last round created.
		m.Reset(t)
		c = connect(t, m.URL)
		createBase(t, c, "proxy")
		apply(t, c, before)
		ctx, cancel := context.WithCancel(context.Background())
		writes := 0
		c.Calls.OnCall = func(call Call) {
			if call.Write() && call.Err == nil {
				if writes++; writes == stop {
					cancel()
				}
			}
		}
		_, err := ApplyPlan(ctx, c, after, ApplyOptions{})
		c.Calls.OnCall = nil
		cancel()
		if err == nil {
			t.Fatalf("stopped after %d writes but apply reported success", stop)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stop after %d: %v", stop, err)
		}
		apply(t, c, after)
		assertHolds(t, c, after)
		if again := apply(t, c, after); again.Writes != 0 {
			t.Fatalf("stop after %d: the run after convergence wrote %d times", stop, again.Writes)
		}
	}
	t.Logf("an apply of %d writes, stopped after each of them, converged every time", total)
}

func TestApplyErrorsNameThePrincipalAndKeepAccess(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	fp := testenv.StartFaultProxy(t, m.URL)
	c := connect(t, fp.URL)
	createBase(t, c, "proxy")
	before := plan(t, fleet(200, 0), 2, nil)
	apply(t, c, before)
	after := plan(t, fleet(260, 0), 2, before)
	for _, tc := range []struct {
		fault *testenv.Fault
		op    string
		want  []string
	}{
		{testenv.Denied, "PutRolePolicy", []string{"iam:PutRolePolicy on role proxy-shard-00", "AccessDenied", "rdsgate doctor"}},
		{testenv.TooLarge, "CreatePolicy", []string{"iam:CreatePolicy on managed policy", "LimitExceeded", "planned this document at", "Nothing that is still needed was taken away"}},
	} {
		fp.Decide(func(op string, n int) *testenv.Fault {
			if op == tc.op {
				return tc.fault
			}
			return nil
		})
		_, err := ApplyPlan(context.Background(), c, after, ApplyOptions{})
		fp.Decide(nil)
		if err == nil {
			t.Fatalf("%s: apply succeeded", tc.fault.Code)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.fault.Code, err, w)
			}
		}
		if err := reachable(context.Background(), c.IAM, before, grantedARNs(before)); err != nil {
			t.Fatalf("%s: access that worked before was removed: %v", tc.fault.Code, err)
		}
	}
	apply(t, c, after)
	assertHolds(t, c, after)
}

func TestApplyRefusesWhatItDoesNotOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.StartMoto(t)
	c := connect(t, m.URL)
	p := plan(t, fleet(400, 0), 2, nil)

	_, err := ApplyPlan(ctx, c, p, ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), `the role "proxy" does not exist`) {
		t.Fatalf("missing base: %v", err)
	}
	createBase(t, c, "proxy")
	// A role with a shard's name that rdsgate did not make.
	trust := string(policies.TrustPolicy(p.Base.ARN, "").JSON())
	if _, err := c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("proxy-shard-001"), Path: aws.String(p.Settings.ShardRolePath), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	err = refusedWithoutWriting(t, c, p)
	if err == nil || !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "role proxy-shard-001 already exists and rdsgate does not own it (no rdsgate:managed tag)") {
		t.Fatalf("foreign shard role: %v", err)
	}
	if _, err := c.IAM.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("proxy-shard-001")}); err != nil {
		t.Fatal(err)
	}
	// Other inline policies leave less room than the plan reserved.
	big := string(plan(t, fleet(60, 900), 0, nil).Principals[0].InlinePolicies[0].Document.JSON())
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("someone-elses"), PolicyDocument: aws.String(big)}); err != nil {
		t.Fatal(err)
	}
	err = refusedWithoutWriting(t, c, p)
	if err == nil || !strings.Contains(err.Error(), "plan again with --reserved-inline") {
		t.Fatalf("reserved inline: %v", err)
	}
}

// refusedWithoutWriting applies a plan apply must refuse and returns its
// error; the test fails if the apply wrote anything to IAM first.
func refusedWithoutWriting(t *testing.T, c *Clients, p *policies.Plan) error {
	t.Helper()
	c.Calls.Reset()
	_, err := ApplyPlan(context.Background(), c, p, ApplyOptions{})
	if _, writes := c.Calls.Count(); writes != 0 {
		t.Fatalf("%d writes before refusing (%v)", writes, err)
	}
	return err
}

// TestOwnQuotaCheck shows why apply checks sizes itself: moto accepts a
// policy far over IAM's quota, and a hand-edited plan must still be refused.
func TestOwnQuotaCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	p := plan(t, fleet(100, 0), 2, nil)
	doc := p.Principals[0].InlinePolicies[0].Document
	st := &doc.Statements[len(doc.Statements)-1]
	for i := range 200 {
		st.Resource.List = append(st.Resource.List, fmt.Sprintf("arn:aws:rds-db:us-east-1:%s:dbuser:db-%026d/*", account, 5000+i))
	}
	if doc.Size() <= 10240 {
		t.Fatal("the edited document is not over the quota")
	}
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("oversized"), PolicyDocument: aws.String(string(doc.JSON()))}); err != nil {
		t.Fatalf("moto refused an oversized policy (the emulator now checks sizes; this test's premise changed): %v", err)
	}
	if _, err := c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("oversized")}); err != nil {
		t.Fatal(err)
	}
	err := refusedWithoutWriting(t, c, p)
	var nf *policies.NoFitError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "over the") {
		t.Fatalf("oversized plan: %v", err)
	}
}

func TestManagedPolicyVersionsArePruned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	var prev *policies.Plan
	// The first managed policy changes on every run: more than five versions.
	for i := range 8 {
		inv := fleet(140, 0)
		inv.Databases[100].DBUsers = []string{fmt.Sprintf("user%d", i)}
		p := plan(t, inv, 2, prev)
		apply(t, c, p)
		assertHolds(t, c, p)
		prev = p
	}
	var arn string
	for _, pp := range prev.Principals {
		for _, pol := range pp.ManagedPolicies {
			for _, d := range pol.Databases {
				if d == "db00100" {
					arn = pol.ARN
				}
			}
		}
	}
	if arn == "" {
		t.Fatal("db00100 is not in a managed policy; pick another database")
	}
	v, err := c.IAM.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(v.Versions); n < 2 || n > 5 {
		t.Fatalf("%s has %d versions", arn, n)
	}
}

// TestApplyAtScale applies a plan of 2,000 databases across chained roles
// and reports the API calls and times; the second run must write nothing.
func TestApplyAtScale(t *testing.T) {
	t.Parallel()
	c := motoWithBase(t)
	p := plan(t, fleet(2000, 0), 10, nil)
	first := apply(t, c, p)
	second := apply(t, c, p)
	if second.Writes != 0 {
		t.Fatalf("second run wrote %d times", second.Writes)
	}
	assertHolds(t, c, p)
	t.Logf("2,000 databases on %d principals in %d documents: first apply %d calls (%d writes) in %s; no-op apply %d calls in %s",
		len(p.Principals), p.Stats.Documents, first.Calls, first.Writes, first.Elapsed.Round(time.Millisecond), second.Calls, second.Elapsed.Round(time.Millisecond))
}

// TestApplyChecksTheChain: a boundary rdsgate does not manage can stop the
// base from assuming the shard roles apply just made; apply says so.
func TestApplyChecksTheChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	cap, err := c.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("connect-only"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IAM.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String("proxy"), PermissionsBoundary: cap.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	p := plan(t, fleet(400, 0), 2, nil)
	r := apply(t, c, p)
	broken := r.BrokenChains()
	if len(broken) != len(p.Principals)-1 || len(broken) == 0 {
		t.Fatalf("%d broken chains for %d shard roles: %+v", len(broken), len(p.Principals)-1, r.Chains)
	}
	if !strings.Contains(strings.Join(broken[0].Problems, " "), "permissions boundary") {
		t.Fatalf("problem does not name the boundary: %+v", broken[0])
	}
}

// An empty plan for the same base principal removes everything rdsgate
// wrote: how `terraform destroy` of the shards ends.
func TestApplyEmptyPlanRemovesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	full := plan(t, fleet(300, 0), 2, nil)
	if len(full.Principals) < 2 {
		t.Fatalf("want shard roles in the test plan, got %d principals", len(full.Principals))
	}
	apply(t, c, full)
	q := policies.DefaultQuotas()
	q.AttachedPoliciesPerRole = 2
	empty, err := policies.NewPlan(policies.PlanInput{Inventory: &policies.Inventory{}, Quotas: q, Previous: full,
		Target: policies.Target{Kind: policies.PrincipalRole, Name: "proxy", MaxShardRoles: 50, AccountID: account}})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, c, empty)
	obs, err := ReadState(ctx, c.IAM, full)
	if err != nil {
		t.Fatal(err)
	}
	for _, pp := range obs.Plan.Principals {
		if pp.Shard || len(pp.InlinePolicies)+len(pp.ManagedPolicies) > 0 {
			t.Fatalf("left behind: %s with %d inline and %d managed", pp.Name, len(pp.InlinePolicies), len(pp.ManagedPolicies))
		}
	}
	if len(obs.Orphans) > 0 {
		t.Fatalf("orphans: %v", obs.Orphans)
	}
	if base, _ := ReadRole(ctx, c.IAM, "proxy"); base == nil {
		t.Fatal("the base role itself was deleted; it is not rdsgate's")
	}
}

// swapped is p with the first n databases of its managed policy and the last
// n of its inline policy trading places: a cycle no order of plain writes
// can apply without a gap.
func swapped(t *testing.T, p *policies.Plan, n int) *policies.Plan {
	t.Helper()
	b, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	out, err := policies.ReadPlan(b, "test")
	if err != nil {
		t.Fatal(err)
	}
	base := &out.Principals[0]
	inline, managed := &base.InlinePolicies[0], &base.ManagedPolicies[0]
	connect := func(d *policies.Document) *policies.Statement {
		return &d.Statements[len(d.Statements)-1]
	}
	ia, ma := connect(inline.Document).Resource.List, connect(managed.Document).Resource.List
	give, take := slices.Clone(ia[len(ia)-n:]), slices.Clone(ma[:n])
	connect(inline.Document).Resource.List = append(slices.Clone(ia[:len(ia)-n]), take...)
	connect(managed.Document).Resource.List = append(slices.Clone(ma[n:]), give...)
	inline.Size, managed.Size = inline.Document.Size(), managed.Document.Size()
	out.Steps = nil
	if err := out.Check(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApplyBreaksCyclesAgainstMoto applies a plan in which two documents
// swap databases, against moto, checking after every write. The interim
// write (old and new together) or temporary document is real IAM traffic.
func TestApplyBreaksCyclesAgainstMoto(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	c := connect(t, m.URL)
	createBase(t, c, "proxy")
	before := plan(t, fleet(100, 0), 1, nil)
	apply(t, c, before)
	after := swapped(t, before, 3)
	ctx := context.Background()
	keep := iamcheck.Survivors(planworld.Of(before), planworld.Of(after))
	checker := connect(t, m.URL)
	var gaps []string
	c.Calls.OnCall = func(call Call) {
		if !call.Write() || call.Err != nil {
			return
		}
		w, err := worldOfIAM(ctx, checker.IAM, after)
		if err != nil {
			gaps = append(gaps, err.Error())
		} else if missing := w.Missing(keep); len(missing) > 0 {
			gaps = append(gaps, fmt.Sprintf("after %s: %s unreachable", call.Operation, missing[0]))
		}
	}
	r := apply(t, c, after)
	c.Calls.OnCall = nil
	if len(gaps) > 0 {
		t.Fatalf("gap in access:\n%s", strings.Join(gaps, "\n"))
	}
	if r.Interim+r.Temporary == 0 {
		t.Fatalf("a swap was applied without an interim or temporary document: %+v", r.Steps)
	}
	assertHolds(t, c, after)
	for _, s := range r.Steps {
		t.Logf("%s %s %s interim=%v adds=%v removes=%v", s.Step.Action, s.Step.Principal, s.Step.Policy, s.Step.Interim, s.Step.Adds, s.Step.Removes)
	}
	t.Logf("%d writes, %d interim, %d temporary", r.Writes, r.Interim, r.Temporary)
}

// noteLog is a Progress that keeps the notes.
type noteLog struct {
	mu    sync.Mutex
	notes []string
}

func (n *noteLog) Start(int)                   {}
func (n *noteLog) Step(int, StepResult, error) {}
func (n *noteLog) Done()                       {}
func (n *noteLog) Note(s string) {
	n.mu.Lock()
	n.notes = append(n.notes, s)
	n.mu.Unlock()
}

func (n *noteLog) count(sub string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.notes {
		if strings.Contains(s, sub) {
			c++
		}
	}
	return c
}

func (n *noteLog) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.notes, "\n")
}

// TestApplyThroughIAMLag runs the flow a Terraform apply runs (the base
// role created, then its shards applied at once, shard roles whose trust
// names it) against moto behind a layer that behaves like real IAM: new
// roles and policies missing from reads, and trust policies naming them
// refused as invalid principals, for a while after creation. It must
// succeed, say that it waits, and a real typo must still fail at once.
func TestApplyThroughIAMLag(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	fp := testenv.StartFaultProxy(t, m.URL)
	refused := fp.Lag(1500 * time.Millisecond)
	c := connect(t, fp.URL)
	ctx := context.Background()
	if _, err := EnsureRole(ctx, c.IAM, RoleSpec{Name: "proxy", Trust: policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}}}); err != nil {
		t.Fatalf("creating the base role: %v", err)
	}
	var notes noteLog
	p := plan(t, fleet(300, 0), 1, nil)
	if countShards(p) == 0 {
		t.Fatal("the plan has no shard roles; it would not exercise trust policies naming a new role")
	}
	if _, err := ApplyPlan(ctx, c, p, ApplyOptions{Progress: &notes}); err != nil {
		t.Fatalf("apply through IAM's lag: %v", err)
	}
	if refused() < 3 {
		t.Fatalf("the lag layer refused only %d requests; the test proves little", refused())
	}
	if notes.count("eventually consistent") == 0 {
		t.Fatalf("no note while waiting for IAM:\n%s", &notes)
	}
	assertHolds(t, c, p)
	// A role nobody created is not waited for.
	c.Calls.Reset()
	typo, err := policies.NewPlan(policies.PlanInput{Inventory: fleet(3, 0), Quotas: policies.DefaultQuotas(),
		Target: policies.Target{Kind: policies.PrincipalRole, Name: "prxoy"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ApplyPlan(ctx, c, typo, ApplyOptions{})
	if !errors.Is(err, ErrNoBase) {
		t.Fatalf("typo: %v", err)
	}
	n := 0
	for _, call := range c.Calls.Calls() {
		if call.Operation == "GetRole" {
			n++
		}
	}
	if n > 2 {
		t.Fatalf("a role nobody created was read %d times", n)
	}
	t.Logf("%d requests refused by the lag layer; %d notes", refused(), len(notes.notes))
}

// TestConsistencyWaitCostsNothingWithoutLag: against an IAM that shows what
// it has created at once, the waits add no request and no sleep: the same
// apply makes exactly the same calls with and without them.
func TestConsistencyWaitCostsNothingWithoutLag(t *testing.T) {
	t.Parallel()
	ops := func(wrapped bool) []string {
		m := testenv.StartMoto(t)
		c := connect(t, m.URL)
		if !wrapped {
			c.IAM = c.IAM.(*eventually).IAMAPI
		}
		ctx := context.Background()
		if _, err := EnsureRole(ctx, c.IAM, RoleSpec{Name: "proxy", Trust: policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}}}); err != nil {
			t.Fatal(err)
		}
		before := plan(t, fleet(300, 0), 2, nil)
		apply(t, c, before)
		apply(t, c, plan(t, fleet(320, 40), 1, before))
		var out []string
		for _, call := range c.Calls.Calls() {
			out = append(out, call.Operation)
		}
		return out
	}
	with, without := ops(true), ops(false)
	if strings.Join(with, " ") != strings.Join(without, " ") {
		t.Fatalf("the consistency waits changed the calls of an apply without lag:\nwith    %d: %v\nwithout %d: %v", len(with), with, len(without), without)
	}
	t.Logf("%d IAM calls either way", len(with))
}
