package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
)

func findings(r *DriftReport) string {
	var s []string
	for _, f := range r.Findings {
		s = append(s, f.String()+" +"+strings.Join(f.Added, "|")+" -"+strings.Join(f.Removed, "|"))
	}
	return strings.Join(s, "\n")
}

func TestDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := motoWithBase(t)
	p := plan(t, fleet(400, 0), 2, nil)
	apply(t, c, p)
	drift := func() *DriftReport {
		t.Helper()
		r, err := Drift(ctx, c, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := drift(); r.Drifted() {
		t.Fatalf("drift right after apply:\n%s", findings(r))
	}
	shard := p.Principals[1]
	doc := shard.InlinePolicies[0].Document

	// The same permissions in another shape are not drift.
	reshaped := doc.Clone()
	list := reshaped.Statements[0].Resource.List
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, reshaped.JSON(), "", "    "); err != nil {
		t.Fatal(err)
	}
	pretty := indented.String()
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(shard.Name), PolicyName: aws.String(policies.InlinePolicyName), PolicyDocument: aws.String(pretty)}); err != nil {
		t.Fatal(err)
	}
	if r := drift(); r.Drifted() {
		t.Fatalf("reordered, re-spaced document counted as drift:\n%s", findings(r))
	}

	// A statement added by hand is.
	widened := doc.Clone()
	widened.Statements = append(widened.Statements, policies.Statement{Effect: policies.Allow, Action: policies.One("rds-db:connect"), Resource: policies.One("arn:aws:rds-db:*:123456789012:dbuser:*/*")})
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(shard.Name), PolicyName: aws.String(policies.InlinePolicyName), PolicyDocument: aws.String(widened.String())}); err != nil {
		t.Fatal(err)
	}
	// A managed policy detached, a trust policy changed, someone else's policy attached.
	base := p.Principals[0]
	if _, err := c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(base.Name), PolicyArn: aws.String(base.ManagedPolicies[0].ARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(shard.Name),
		PolicyDocument: aws.String(policies.TrustPolicy("arn:aws:iam::123456789012:role/intruder", "").String())}); err != nil {
		t.Fatal(err)
	}
	theirs, err := c.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("ops-readonly"), PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds:Describe*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(base.Name), PolicyArn: theirs.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	r := drift()
	got := findings(r)
	for _, want := range []string{
		"role " + shard.Name + " policy rdsgate-connect: inline policy differs from the plan +Allow rds-db:connect on arn:aws:rds-db:*:123456789012:dbuser:*/* -",
		"role proxy policy " + base.ManagedPolicies[0].Name + ": managed policy is not attached",
		"role " + shard.Name + `: trust policy differs from the plan +Allow sts:AssumeRole for {"AWS":"arn:aws:iam::123456789012:role/intruder"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("drift report lacks %q:\n%s", want, got)
		}
	}
	if len(r.Findings) != 3 {
		t.Errorf("%d findings, want 3:\n%s", len(r.Findings), got)
	}
	if len(r.Unjudged) != 1 || !strings.Contains(r.Unjudged[0], "ops-readonly") {
		t.Errorf("someone else's policy should be listed, not judged: %v", r.Unjudged)
	}
	// apply repairs it, once the slot someone else took is freed or reserved.
	if _, err := ApplyPlan(ctx, c, p, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "plan again with --reserved-managed 1") {
		t.Fatalf("apply with an unreserved foreign policy attached: %v", err)
	}
	if _, err := c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(base.Name), PolicyArn: theirs.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	apply(t, c, p)
	if r := drift(); r.Drifted() {
		t.Fatalf("drift after repair:\n%s", findings(r))
	}
}

func TestCheckChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.StartMoto(t)
	c := connect(t, m.URL)
	createBase(t, c, "proxy")
	p := plan(t, fleet(400, 0), 2, nil)
	apply(t, c, p)
	base, shard := p.Base.ARN, p.Principals[1].ARN
	hops, err := CheckChain(ctx, c.IAM, []string{base, shard}, "")
	if err != nil || !hops[0].OK {
		t.Fatalf("applied chain: %+v %v", hops, err)
	}
	// Break the trust: moto still lets the role be assumed; rdsgate's check does not.
	name := p.Principals[1].Name
	if _, err := c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name),
		PolicyDocument: aws.String(policies.TrustPolicy("arn:aws:iam::123456789012:role/someone", "").String())}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.STS.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(shard), RoleSessionName: aws.String("check")}); err != nil {
		t.Fatalf("moto refused the assumption (it used not to check trust; the test's premise changed): %v", err)
	}
	hops, err = CheckChain(ctx, c.IAM, []string{base, shard}, "")
	if err != nil || hops[0].OK {
		t.Fatalf("broken trust passed: %+v %v", hops, err)
	}
	wantFix := `add this statement to the trust policy of ` + shard + ` (aws iam update-assume-role-policy --role-name ` + name + ` --policy-document file://trust.json): {"Effect":"Allow","Principal":{"AWS":"` + base + `"},"Action":"sts:AssumeRole"}`
	if strings.Join(hops[0].Fixes, "\n") != wantFix {
		t.Fatalf("fix:\n%s\nwant\n%s", strings.Join(hops[0].Fixes, "\n"), wantFix)
	}
	// Restore trust; take away the base's permission and cap it with a boundary.
	apply(t, c, p)
	if _, err := c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String(policies.InlinePolicyName)}); err != nil {
		t.Fatal(err)
	}
	boundary, err := c.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("cap"), PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IAM.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String("proxy"), PermissionsBoundary: boundary.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	hops, err = CheckChain(ctx, c.IAM, []string{base, shard}, "")
	if err != nil || hops[0].OK || len(hops[0].Problems) != 2 {
		t.Fatalf("missing permission and boundary: %+v %v", hops, err)
	}
	all := strings.Join(hops[0].Fixes, "\n")
	for _, want := range []string{
		`add this statement to a policy of ` + base + ` (for example its inline policy rdsgate-connect): {"Effect":"Allow","Action":"sts:AssumeRole","Resource":"` + shard + `"}`,
		`add this statement to the boundary policy ` + aws.ToString(boundary.Policy.Arn),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("fixes lack %q:\n%s", want, all)
		}
	}
	// A role missing in the middle of a chain is reported once, with its
	// name in the fix, and the hop from it says why it was not checked.
	ghost := "arn:aws:iam::123456789012:role/ghost"
	hops, err = CheckChain(ctx, c.IAM, []string{base, ghost, shard}, "")
	if err != nil || len(hops) != 2 || hops[0].OK || hops[1].OK {
		t.Fatalf("chain through a missing role: %+v %v", hops, err)
	}
	if got := strings.Join(hops[0].Problems, "; ") + " | " + strings.Join(hops[0].Fixes, "; "); got != ghost+" does not exist | create "+ghost+" (rdsgate shards apply creates shard roles), or fix the ARN" {
		t.Errorf("first hop: %s", got)
	}
	if got := strings.Join(hops[1].Problems, "; ") + " | " + strings.Join(hops[1].Fixes, "; "); got != "not checked: "+ghost+" does not exist (see the hop before) | " {
		t.Errorf("second hop repeats the first: %s", got)
	}
	if _, err := CheckChain(ctx, c.IAM, []string{base, shard, shard, shard}, ""); err == nil || !strings.Contains(err.Error(), "at most 2") {
		t.Fatalf("three hops: %v", err)
	}
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := testenv.StartMoto(t)
	f := fixture{t: t, c: connect(t, m.URL), url: m.URL}
	createBase(t, f.c, "proxy")
	p := plan(t, fleet(400, 0), 2, nil)
	apply(t, f.c, p)
	f.instance("us-east-1", "orders", "postgres", "16.4", true, nil)
	f.instance("us-east-1", "billing", "postgres", "16.4", false, nil)
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	inv := &policies.Inventory{Databases: []policies.Database{
		{Name: "orders", Kind: policies.KindInstance, Region: "us-east-1", Endpoint: "127.0.0.1", Port: open.Addr().(*net.TCPAddr).Port},
		{Name: "billing", Kind: policies.KindInstance, Region: "us-east-1", Endpoint: "127.0.0.1", Port: closedPort},
	}}
	got := Doctor(ctx, f.c, DoctorOptions{Plan: p, Inventory: inv, DialTimeout: time.Second})
	byCheck := map[string]Finding{}
	for _, fd := range got {
		byCheck[fd.Check] = fd
	}
	expect := []struct{ check, status, detail, fix string }{
		{"credentials", StatusOK, "static credentials", ""},
		{"identity", StatusOK, "in account 123456789012", ""},
		{"principal proxy", StatusOK, "role proxy exists", ""},
		{"trust " + p.Principals[1].Name, StatusOK, "proxy may assume", ""},
		{"inline proxy", StatusOK, "of 10240 characters (0 by policies outside the plan; the plan reserved 0)", ""},
		{"managed proxy", StatusOK, "2 of 10 managed policies attached (0 outside the plan", ""},
		{"database orders", StatusOK, "enabled", ""},
		{"database billing", StatusFail, "disabled", "rdsgate enable-iam-auth --region us-east-1 --instance billing --apply-immediately"},
		{"reach orders", StatusOK, "answers", ""},
		{"reach billing", StatusFail, "connection refused", "nc -zv 127.0.0.1"},
	}
	for _, e := range expect {
		fd, ok := byCheck[e.check]
		if !ok || fd.Status != e.status || !strings.Contains(fd.Detail, e.detail) || !strings.Contains(fd.Fix, e.fix) {
			t.Errorf("%s: %+v, want %s with %q and fix %q", e.check, fd, e.status, e.detail, e.fix)
		}
	}

	// No credentials at all: one finding that explains where they come from.
	none, err := Connect(ctx, Config{Region: "us-east-1", EndpointURL: m.URL,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("failed to refresh cached credentials, no EC2 IMDS role found")
		})})
	if err != nil {
		t.Fatal(err)
	}
	got = Doctor(ctx, none, DoctorOptions{})
	if len(got) != 1 || got[0].Status != StatusFail || !strings.Contains(got[0].Fix, "usual causes") || !strings.Contains(got[0].Fix, "instance profile") && !strings.Contains(got[0].Fix, "hop-limit") {
		t.Fatalf("no credentials: %+v", got)
	}
}
