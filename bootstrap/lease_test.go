package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
	"github.com/rdsgate/rdsgate/test/iamcheck/planworld"
	"github.com/rdsgate/rdsgate/test/iamfake"
)

func fakeWithRole(t *testing.T, name string) *iamfake.IAM {
	t.Helper()
	f := iamfake.New(account)
	if _, err := f.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLeaseOneHolderAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := fakeWithRole(t, "proxy")
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	opts := func(owner string) LeaseOptions {
		return LeaseOptions{Owner: owner, TTL: time.Minute, Settle: -1, Now: clock}
	}
	a, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", opts("ci-run-1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Role("proxy").Tags[TagLease]; got != fmt.Sprintf("ci-run-1 %d", now.Add(time.Minute).Unix()) {
		t.Fatalf("lease tag %q", got)
	}
	_, err = AcquireLease(ctx, f, policies.PrincipalRole, "proxy", opts("ci-run-2"), nil)
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Holder != "ci-run-1" || !strings.Contains(err.Error(), "ci-run-1 holds the lease") || !strings.Contains(err.Error(), "--lease-wait") {
		t.Fatalf("second acquirer: %v", err)
	}
	// The holder renews after a third of the TTL, and keeps it.
	now = now.Add(25 * time.Second)
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.Role("proxy").Tags[TagLease]; got != fmt.Sprintf("ci-run-1 %d", now.Add(time.Minute).Unix()) {
		t.Fatalf("lease not renewed: %q", got)
	}
	// Released: the next one gets it at once.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", opts("ci-run-2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed holder's lease runs out; a stale lease is taken over, and
	// the old holder finds out before it takes anything away.
	now = now.Add(2 * time.Minute)
	c, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", opts("ci-run-3"), nil)
	if err != nil {
		t.Fatalf("stale lease not taken over: %v", err)
	}
	if err := b.Check(ctx); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "ci-run-3") {
		t.Fatalf("old holder: %v", err)
	}
	// Release never removes someone else's lease.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.Role("proxy").Tags[TagLease], "ci-run-3 ") {
		t.Fatalf("b released c's lease: %q", f.Role("proxy").Tags[TagLease])
	}
	_ = c
}

// Two acquirers that both saw no lease and both tagged: the read-back after
// the settle time shows the later tag, so only its writer proceeds.
func TestLeaseBothTagAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := fakeWithRole(t, "proxy")
	// The other apply's tag lands while this one waits to read back.
	intruded := false
	f.OnWrite = func(op string) {
		if op == "TagRole" && !intruded {
			intruded = true
			_, _ = f.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String("proxy"),
				Tags: []iamtypes.Tag{{Key: aws.String(TagLease), Value: aws.String(fmt.Sprintf("other %d", time.Now().Add(time.Hour).Unix()))}}})
		}
	}
	_, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", LeaseOptions{Owner: "me", Settle: time.Millisecond}, nil)
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Holder != "other" {
		t.Fatalf("want the later tag to win, got %v", err)
	}
}

// An apply waits while another holds the lease, telling why, and proceeds
// when it is released.
func TestLeaseWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := fakeWithRole(t, "proxy")
	a, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", LeaseOptions{Owner: "first", Settle: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notes []string
	done := make(chan error, 1)
	go func() {
		_, err := AcquireLease(ctx, f, policies.PrincipalRole, "proxy", LeaseOptions{Owner: "second", Settle: -1, Wait: time.Minute, Poll: 5 * time.Millisecond},
			func(s string) { mu.Lock(); notes = append(notes, s); mu.Unlock() })
		done <- err
	}()
	// Release once the waiter has said it waits: an event, not a sleep.
	for {
		mu.Lock()
		n := len(notes)
		mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("second acquired while first held the lease: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notes[0], "waiting for the apply first") {
		t.Fatalf("note %q", notes[0])
	}
}

// appliedFleet is a fake IAM that holds a 300-database fleet's plan, and
// the plan that moves it to another shape.
func appliedFleet(t *testing.T) (f *iamfake.IAM, c *Clients, before, after *policies.Plan) {
	t.Helper()
	f = fakeWithRole(t, "proxy")
	c = fakeClients(f)
	before = plan(t, fleet(300, 0), 3, nil)
	if _, err := ApplyPlan(context.Background(), c, before, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	return f, c, before, plan(t, fleet(300, 40), 1, nil)
}

// onFirstWrite runs do once, when IAM has just taken the first write that
// match accepts; the flag says whether it ran.
func onFirstWrite(f *iamfake.IAM, match func(op string) bool, do func()) *bool {
	ran := new(bool)
	f.OnWrite = func(op string) {
		if !*ran && match(op) {
			*ran = true
			do()
		}
	}
	return ran
}

// A hand edit between the grants and the first revoke: the apply re-reads
// IAM before it takes anything away and stops.
func TestApplyStopsWhenIAMChangesUnderIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, c, before, after := appliedFleet(t)
	keep := iamcheck.Survivors(worldOfFake(f, before.Base.ARN, ""), planworld.Of(after))
	start := len(f.Ops())
	edited := onFirstWrite(f, func(op string) bool {
		return op == "PutRolePolicy" || op == "CreatePolicyVersion" || op == "CreatePolicy"
	}, func() {
		_, _ = f.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String(policies.InlinePolicyName),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"arn:aws:rds-db:us-east-1:123456789012:dbuser:db-HANDEDIT/admin"}]}`)})
	})
	_, err := ApplyPlan(ctx, c, after, ApplyOptions{})
	f.OnWrite = nil
	if !errors.Is(err, ErrIAMChanged) || !strings.Contains(err.Error(), "rewritten") || !strings.Contains(err.Error(), "run it again") {
		t.Fatalf("want ErrIAMChanged, got %v", err)
	}
	if !*edited {
		t.Fatal("the edit never happened")
	}
	// Nothing was taken away by the stopped apply (the hand edit took
	// away what it took; that is not rdsgate's to keep).
	for _, st := range f.Ops()[start:] {
		if strings.HasPrefix(st, "Delete") || strings.HasPrefix(st, "Detach") {
			t.Fatalf("the stopped apply wrote %s", st)
		}
	}
	// Run again: it converges.
	if _, err := ApplyPlan(ctx, c, after, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if missing := worldOfFake(f, after.Base.ARN, "").Missing(keep); len(missing) > 0 {
		t.Fatalf("after the second run %s is missing", missing[0])
	}
}

// Another apply takes the lease over (this one stalled past its TTL): this
// one stops before its first revoke.
func TestApplyStopsWhenLeaseIsLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, c, _, after := appliedFleet(t)
	onFirstWrite(f, func(op string) bool { return op != "TagRole" && op != "UntagRole" }, func() {
		_, _ = f.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String("proxy"),
			Tags: []iamtypes.Tag{{Key: aws.String(TagLease), Value: aws.String(fmt.Sprintf("someone-else %d", time.Now().Add(time.Hour).Unix()))}}})
	})
	_, err := ApplyPlan(ctx, c, after, ApplyOptions{})
	f.OnWrite = nil
	if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "someone-else") {
		t.Fatalf("want ErrLeaseLost, got %v", err)
	}
	if !strings.HasPrefix(f.Role("proxy").Tags[TagLease], "someone-else ") {
		t.Fatal("the stopped apply released someone else's lease")
	}
}

// Two applies of different fleets on one base principal at the same time,
// against moto: the lease lets one write at a time, and IAM ends up holding
// exactly the plan of the one that finished last.
func TestConcurrentAppliesAgainstMoto(t *testing.T) {
	t.Parallel()
	for _, wait := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("wait=%s", wait), func(t *testing.T) {
			t.Parallel()
			m := testenv.StartMoto(t)
			base := connect(t, m.URL)
			createBase(t, base, "proxy")
			plans := []*policies.Plan{plan(t, fleet(700, 0), 3, nil), plan(t, fleet(500, 2000), 3, nil)}
			type result struct {
				err  error
				done time.Time
			}
			results := make([]result, len(plans))
			var wg sync.WaitGroup
			for i, p := range plans {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := ApplyPlan(context.Background(), connect(t, m.URL), p, ApplyOptions{Lease: LeaseOptions{Wait: wait, Poll: 20 * time.Millisecond}})
					results[i] = result{err, time.Now()}
				}()
			}
			wg.Wait()
			last := -1
			for i, r := range results {
				switch {
				case r.err == nil:
					if last < 0 || r.done.After(results[last].done) {
						last = i
					}
				case wait > 0:
					t.Errorf("apply %d: with time to wait both must succeed: %v", i, r.err)
				case !errors.As(r.err, new(*LeaseHeldError)) && !errors.Is(r.err, ErrLeaseLost) && !errors.Is(r.err, ErrIAMChanged):
					t.Errorf("apply %d failed for another reason: %v", i, r.err)
				}
			}
			if last < 0 {
				t.Fatalf("no apply succeeded: %v / %v", results[0].err, results[1].err)
			}
			rep, err := Drift(context.Background(), base, plans[last])
			if err != nil {
				t.Fatal(err)
			}
			if rep.Drifted() {
				t.Fatalf("IAM differs from the plan of the apply that finished last: %+v", rep.Findings)
			}
			t.Logf("apply %d finished last; the other: %v", last, results[1-last].err)
		})
	}
}
