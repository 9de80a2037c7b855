package bootstrap

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
)

func TestEnsureRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := connect(t, testenv.StartMoto(t).URL)
	spec := RoleSpec{
		Name: "proxy", Path: "/rdsgate/", Description: "the rdsgate proxy",
		Trust:              policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}, RoleARNs: []string{"arn:aws:iam::123456789012:role/ops"}, ExternalID: "ext-1"},
		MaxSessionDuration: 7200, Tags: map[string]string{"team": "data"},
	}
	got, err := EnsureRole(ctx, c.IAM, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Managed || got.Path != "/rdsgate/" || got.MaxSessionDuration != 7200 || got.Tags["team"] != "data" || len(got.Tags) != 1 ||
		!policies.Equivalent(got.Trust, spec.Trust.Document()) || got.ARN != "arn:aws:iam::123456789012:role/rdsgate/proxy" {
		t.Fatalf("%+v", got)
	}

	// The same spec again writes nothing.
	c.Calls.Reset()
	if _, err := EnsureRole(ctx, c.IAM, spec); err != nil {
		t.Fatal(err)
	}
	if _, writes := c.Calls.Count(); writes != 0 {
		t.Fatalf("%d writes for an unchanged role: %+v", writes, c.Calls.Calls())
	}

	// A change converges: trust narrowed, session, tags.
	spec.Trust.Services = nil
	spec.MaxSessionDuration = 3600
	spec.Tags = map[string]string{"owner": "dba"}
	if got, err = EnsureRole(ctx, c.IAM, spec); err != nil {
		t.Fatal(err)
	}
	if got.MaxSessionDuration != 3600 || len(got.Tags) != 1 || got.Tags["owner"] != "dba" || !policies.Equivalent(got.Trust, spec.Trust.Document()) {
		t.Fatalf("%+v %s", got, got.Trust.JSON())
	}

	// A role rdsgate did not create is never taken over.
	if _, err := c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("theirs"), AssumeRolePolicyDocument: aws.String(string(spec.Trust.Document().JSON()))}); err != nil {
		t.Fatal(err)
	}
	theirs := spec
	theirs.Name, theirs.Path = "theirs", "/"
	if _, err := EnsureRole(ctx, c.IAM, theirs); err == nil || !strings.Contains(err.Error(), "does not take over") {
		t.Fatalf("took over a foreign role: %v", err)
	}
	if err := DeleteRole(ctx, c.IAM, "theirs"); err == nil || !strings.Contains(err.Error(), "did not create") {
		t.Fatalf("deleted a foreign role: %v", err)
	}

	// Bad input names the field and makes no call.
	c.Calls.Reset()
	bad := spec
	bad.MaxSessionDuration = 60
	_, err = EnsureRole(ctx, c.IAM, bad)
	var fe *policies.FieldError
	if !errors.As(err, &fe) || fe.Field != "max_session_duration" {
		t.Fatalf("%v", err)
	}
	if calls, _ := c.Calls.Count(); calls != 0 {
		t.Fatalf("%d calls for invalid input", calls)
	}

	// Deleting refuses while someone else's policy is attached, then works.
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("handmade"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteRole(ctx, c.IAM, "proxy"); err == nil || !strings.Contains(err.Error(), "inline policy handmade") {
		t.Fatalf("%v", err)
	}
	if _, err := c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("handmade")}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteRole(ctx, c.IAM, "proxy"); err != nil {
		t.Fatal(err)
	}
	if r, err := ReadRole(ctx, c.IAM, "proxy"); r != nil || err != nil {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestRoleTrust(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := connect(t, testenv.StartMoto(t).URL)
	theirs := `{"Version":"2012-10-17","Statement":[{"Sid":"Lambda","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("app"), AssumeRolePolicyDocument: aws.String(theirs)}); err != nil {
		t.Fatal(err)
	}
	tr := RoleTrust{RoleName: "app", Spec: policies.TrustSpec{Sid: "Rdsgate", RoleARNs: []string{"arn:aws:iam::123456789012:role/proxy"}, ExternalID: "e-1"}}
	if err := PutRoleTrust(ctx, c.IAM, tr); err != nil {
		t.Fatal(err)
	}
	stmts, arn, ok, err := ReadRoleTrust(ctx, c.IAM, "app", "Rdsgate")
	if err != nil || !ok || len(stmts) != 1 || arn != "arn:aws:iam::123456789012:role/app" {
		t.Fatalf("%v %v %s %v", stmts, ok, arn, err)
	}
	r, _ := ReadRole(ctx, c.IAM, "app")
	if len(r.Trust.Statements) != 2 || r.Trust.Statements[0].Sid != "Lambda" {
		t.Fatalf("the role's own trust changed: %s", r.Trust.JSON())
	}
	// With the proxy's own permission, the chain holds by rdsgate's own
	// evaluator (moto lets anyone assume anything, so it cannot tell).
	createBase(t, c, "proxy")
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("proxy"), PolicyName: aws.String("assume"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"` + arn + `"}]}`)}); err != nil {
		t.Fatal(err)
	}
	chainOK := func() bool {
		hops, err := CheckChain(ctx, c.IAM, []string{"arn:aws:iam::123456789012:role/proxy", arn}, "e-1")
		if err != nil {
			t.Fatal(err)
		}
		return len(hops) == 1 && hops[0].OK
	}
	if !chainOK() {
		t.Fatal("the proxy cannot assume the role after the trust was added")
	}
	c.Calls.Reset()
	if err := PutRoleTrust(ctx, c.IAM, tr); err != nil {
		t.Fatal(err)
	}
	if _, writes := c.Calls.Count(); writes != 0 {
		t.Fatalf("%d writes for trust already in place", writes)
	}
	if err := RemoveRoleTrust(ctx, c.IAM, "app", "Rdsgate"); err != nil {
		t.Fatal(err)
	}
	if chainOK() {
		t.Fatal("the chain still holds after the trust was removed")
	}
	r, _ = ReadRole(ctx, c.IAM, "app")
	orig, _ := policies.Parse([]byte(theirs))
	if !policies.Equivalent(r.Trust, orig) {
		t.Fatalf("after removal: %s", r.Trust.JSON())
	}
	if err := PutRoleTrust(ctx, c.IAM, RoleTrust{RoleName: "missing", Spec: tr.Spec}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("%v", err)
	}
}

// unseenRole is IAM just after another run created a role: the first read
// does not show it yet, so the writer's CreateRole meets EntityAlreadyExists.
type unseenRole struct {
	IAMAPI
	name  string
	shown bool
}

func (u *unseenRole) GetRole(ctx context.Context, in *iam.GetRoleInput, o ...func(*iam.Options)) (*iam.GetRoleOutput, error) {
	if aws.ToString(in.RoleName) == u.name && !u.shown {
		u.shown = true
		return nil, &smithy.GenericAPIError{Code: "NoSuchEntity", Message: "The role with name " + u.name + " cannot be found."}
	}
	return u.IAMAPI.GetRole(ctx, in, o...)
}

// TestRoleWritersAdoptARoleCreatedMeanwhile: both role writers (EnsureRole
// and the apply's shard-role step) meet a role another run created between
// their read and their CreateRole, and bring it to what they want instead of
// failing or leaving the other run's trust and session length.
func TestRoleWritersAdoptARoleCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := connect(t, testenv.StartMoto(t).URL)
	old := policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}}.Document()
	for _, name := range []string{"declared", "shard-1"} {
		if _, err := c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String("/rdsgate/"),
			AssumeRolePolicyDocument: aws.String(string(old.JSON())), MaxSessionDuration: aws.Int32(3600), Tags: roleTags(nil)}); err != nil {
			t.Fatal(err)
		}
	}

	spec := RoleSpec{Name: "declared", Path: "/rdsgate/", Description: "ops", MaxSessionDuration: 7200,
		Trust: policies.TrustSpec{RoleARNs: []string{"arn:aws:iam::123456789012:role/ops"}}}
	got, err := EnsureRole(ctx, &unseenRole{IAMAPI: c.IAM, name: "declared"}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxSessionDuration != 7200 || got.Description != "ops" || !policies.Equivalent(got.Trust, spec.Trust.Document()) {
		t.Fatalf("declared role not converged: %+v %s", got, got.Trust.JSON())
	}

	trust := policies.TrustSpec{RoleARNs: []string{"arn:aws:iam::123456789012:role/proxy"}}.Document()
	pp := &policies.PlanPrincipal{Kind: policies.PrincipalRole, Name: "shard-1", Path: "/rdsgate/", Shard: true, TrustPolicy: trust, MaxSessionDuration: 43200}
	e := &executor{api: &unseenRole{IAMAPI: c.IAM, name: "shard-1"}, desired: &policies.Plan{Base: policies.PrincipalRef{ARN: "arn:aws:iam::123456789012:role/proxy"}}}
	if err := e.ensureRole(ctx, pp); err != nil {
		t.Fatal(err)
	}
	shard, err := ReadRole(ctx, c.IAM, "shard-1")
	if err != nil {
		t.Fatal(err)
	}
	if shard.MaxSessionDuration != 43200 || !policies.Equivalent(shard.Trust, trust) {
		t.Fatalf("shard role not converged: %+v %s", shard, shard.Trust.JSON())
	}
}
