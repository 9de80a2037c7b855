package bootstrap

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
)

func TestCreateIAM(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	bp, err := policies.NewBootstrapPolicy(policies.BootstrapOptions{Types: []string{"rds", "rds-proxy"}, Name: "proxy", AccountID: account,
		AssumeRoleARNs: []string{"arn:aws:iam::123456789012:role/rdsgate/proxy/*"}})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := PlanBootstrap(ctx, c, bp)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || changes[0].Action != "create" || !strings.Contains(changes[1].What, "permissions boundary of role proxy") {
		t.Fatalf("changes: %+v", changes)
	}
	if err := ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	// What IAM now holds is the policy and its cap, judged by the evaluator.
	p, err := ReadPrincipal(ctx, c.IAM, policies.PrincipalRole, "proxy")
	if err != nil {
		t.Fatal(err)
	}
	if p.Boundary != bp.BoundaryARN || !policies.Equivalent(p.Inline[policies.BootstrapPolicyName], bp.Policy) {
		t.Fatalf("role holds boundary %q and policy %v", p.Boundary, p.Inline)
	}
	boundary := &ObservedPolicy{ARN: bp.BoundaryARN, DefaultVersion: "v1"}
	if err := readPolicyDocument(ctx, c.IAM, boundary); err != nil || !boundary.Managed() {
		t.Fatalf("boundary policy: %+v %v", boundary, err)
	}
	self := &policies.PrincipalPolicies{ARN: p.ARN, Identity: []*policies.Document{p.Inline[policies.BootstrapPolicyName]}, Boundary: boundary.Document}
	if !self.Allows(policies.Request{Action: "iam:PutRolePolicy", Resource: p.ARN}) || self.Allows(policies.Request{Action: "iam:CreateUser", Resource: "*"}) {
		t.Fatal("the proxy's effective permissions are not what print-iam promised")
	}

	// Again: nothing to write.
	c.Calls.Reset()
	changes, err = PlanBootstrap(ctx, c, bp)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range changes {
		if ch.Action != "unchanged" {
			t.Fatalf("second run wants to %s %s", ch.Action, ch.What)
		}
	}
	if err := ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	if _, writes := c.Calls.Count(); writes != 0 {
		t.Fatalf("second run made %d writes", writes)
	}

	// A wider policy shows as an update with the added statements.
	wider, _ := policies.NewBootstrapPolicy(policies.BootstrapOptions{Types: []string{"rds", "rds-proxy", "redshift"}, Name: "proxy", AccountID: account,
		AssumeRoleARNs: []string{"arn:aws:iam::123456789012:role/rdsgate/proxy/*"}})
	changes, err = PlanBootstrap(ctx, c, wider)
	if err != nil {
		t.Fatal(err)
	}
	added, removed := changes[2].Diff()
	if changes[2].Action != "update" || len(removed) != 0 || len(added) < 2 || !strings.Contains(strings.Join(added, "\n"), "redshift:GetClusterCredentials") {
		t.Fatalf("update: %s, added %v, removed %v", changes[2].Action, added, removed)
	}
}

func TestCreateIAMRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := connect(t, testenv.StartMoto(t).URL)
	bp, _ := policies.NewBootstrapPolicy(policies.BootstrapOptions{Name: "proxy", AccountID: account})
	if _, err := PlanBootstrap(ctx, c, bp); err == nil || !strings.Contains(err.Error(), `the role "proxy" does not exist`) {
		t.Fatalf("missing role: %v", err)
	}
	createBase(t, c, "proxy")
	other, err := c.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("their-boundary"), PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IAM.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String("proxy"), PermissionsBoundary: other.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	if _, err := PlanBootstrap(ctx, c, bp); err == nil || !strings.Contains(err.Error(), "already has the permissions boundary") || !strings.Contains(err.Error(), "--manual") {
		t.Fatalf("foreign boundary: %v", err)
	}
	// Manual mode needs no boundary and works beside it.
	manual, _ := policies.NewBootstrapPolicy(policies.BootstrapOptions{Name: "proxy", AccountID: account, Manual: true})
	changes, err := PlanBootstrap(ctx, c, manual)
	if err != nil || len(changes) != 1 {
		t.Fatalf("manual: %+v %v", changes, err)
	}
	if err := ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveBootstrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	bp, err := policies.NewBootstrapPolicy(policies.BootstrapOptions{Types: []string{"rds"}, Name: "proxy", AccountID: account})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := PlanBootstrap(ctx, c, bp)
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	st, err := ReadBootstrap(ctx, c, bp)
	if err != nil || !st.Exists || !policies.Equivalent(st.Policy, bp.Policy) || st.BoundaryARN != bp.BoundaryARN || !policies.Equivalent(st.Boundary, bp.Boundary) {
		t.Fatalf("%+v %v", st, err)
	}
	if err := RemoveBootstrap(ctx, c, bp); err != nil {
		t.Fatal(err)
	}
	st, err = ReadBootstrap(ctx, c, bp)
	if err != nil || st.Policy != nil || st.BoundaryARN != "" || st.Boundary != nil {
		t.Fatalf("after removal: %+v %v", st, err)
	}
	if _, err := c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(bp.BoundaryARN)}); !isNotFound(err) {
		t.Fatalf("the boundary policy is still there: %v", err)
	}
	c.Calls.Reset()
	if err := RemoveBootstrap(ctx, c, bp); err != nil {
		t.Fatal(err)
	}
	if _, writes := c.Calls.Count(); writes != 0 {
		t.Fatalf("%d writes removing what is gone", writes)
	}
}
