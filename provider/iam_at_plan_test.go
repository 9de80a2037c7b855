package provider

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	fwresource "github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
)

// foreignPolicy is a policy someone else put on the proxy's role: the
// permissions an EC2 instance's agents need, with log groups spelled out,
// about size characters long.
func foreignPolicy(t *testing.T, size int) (string, int) {
	t.Helper()
	var groups []string
	for i := 0; len(strings.Join(groups, `","`)) < size-300; i++ {
		groups = append(groups, fmt.Sprintf("arn:aws:logs:us-east-1:123456789012:log-group:/platform/service-%03d:*", i))
	}
	text := `{"Version":"2012-10-17","Statement":[` +
		`{"Effect":"Allow","Action":["logs:PutLogEvents","logs:CreateLogStream"],"Resource":["` + strings.Join(groups, `","`) + `"]},` +
		`{"Effect":"Allow","Action":["ssm:UpdateInstanceInformation","ssmmessages:CreateControlChannel"],"Resource":"*"}]}`
	d, err := policies.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return text, d.Size()
}

// roleWithOthers makes the proxy's role as a platform team would have it
// before rdsgate: an inline policy and managed policies of its own.
func (e *env) roleWithOthers(t *testing.T, role string, inline string, managed int) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	e.putInline(t, role, "platform-agents", inline)
	for i := range managed {
		out, err := e.c.IAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(fmt.Sprintf("%s-team-%d", role, i)),
			PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-bucket/*"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(role), PolicyArn: out.Policy.Arn}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) putInline(t *testing.T, role, name, doc string) {
	t.Helper()
	if _, err := e.c.IAM.PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name),
		PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
}

// reservationConfig grants n databases through role, with the bootstrap
// policy written in the same apply, and no reservation given.
func reservationConfig(e *env, role string, n int) string {
	return e.providerHCL() + fmt.Sprintf(`
resource "rdsgate_bootstrap_policy" "proxy" {
  role = %[1]q
}

resource "rdsgate_policy_shards" "fleet" {
  base_role   = %[1]q
  max_managed = 3
  databases = [for i in range(%[2]d) : {
    name = format("db-%%03d", i), engine = "postgres", kind = "instance", resource_id = format("db-%%026d", i),
    region = "us-east-1", account_id = "123456789012", db_users = ["app"]
  }]
  pending_inline_policies = {
    (rdsgate_bootstrap_policy.proxy.policy_name) = rdsgate_bootstrap_policy.proxy.size
  }
  depends_on = [rdsgate_bootstrap_policy.proxy]
}
`, role, n)
}

// checkReservedInline: what the plan reserved is what the role's other
// inline policies take in IAM now, the bootstrap policy included.
func (e *env) checkReservedInline(role string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx := context.Background()
		names, err := e.c.IAM.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
		if err != nil {
			return err
		}
		others := 0
		for _, n := range names.PolicyNames {
			if n == policies.InlinePolicyName {
				continue
			}
			out, err := e.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(n)})
			if err != nil {
				return err
			}
			d := decodeErr(aws.ToString(out.PolicyDocument))
			if d == nil {
				return fmt.Errorf("policy %s: unreadable", n)
			}
			others += d.Size()
		}
		got, _ := strconv.Atoi(s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes["reserved_inline"])
		if got != others {
			return fmt.Errorf("reserved_inline = %d, but the role's other inline policies take %d in IAM", got, others)
		}
		return nil
	}
}

// TestAccReservationsFromIAM: the trial that failed halfway through an
// apply. The proxy's role already holds an inline policy and two managed
// policies of the platform team's, and the bootstrap policy is written in
// the same apply; the configuration gives no reservation. The plan reads
// the role from IAM, reserves what the others take (the bootstrap policy
// by its pending size), and the first apply goes through with 300
// databases spread over inline, managed and shard roles. Then someone adds
// another inline policy by hand: the next plan reserves it too.
func TestAccReservationsFromIAM(t *testing.T) {
	e := newEnv(t)
	const role = "res-proxy"
	doc, size := foreignPolicy(t, 3000)
	e.roleWithOthers(t, role, doc, 2)
	late, lateSize := foreignPolicy(t, 1200)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config: reservationConfig(e, role, 300),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("rdsgate_policy_shards.fleet", tfjsonpath.New("reserved_managed"), knownvalue.Int64Exact(2)),
					plancheck.ExpectKnownValue("rdsgate_policy_shards.fleet", tfjsonpath.New("documents"), knownvalue.NotNull()),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					e.checkReservedInline(role),
					e.checkReachable(role, 300),
					func(s *terraform.State) error {
						a := s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes
						boot := s.RootModule().Resources["rdsgate_bootstrap_policy.proxy"].Primary.Attributes["size"]
						b, _ := strconv.Atoi(boot)
						if a["reserved_inline"] != strconv.Itoa(size+b) {
							return fmt.Errorf("reserved_inline = %s, want %d (platform-agents) + %d (bootstrap)", a["reserved_inline"], size, b)
						}
						if n, _ := strconv.Atoi(a["shard_role_arns.#"]); n == 0 {
							return fmt.Errorf("no shard roles: the fleet is too small to test the managed reservation")
						}
						return nil
					},
				),
			},
			{Config: reservationConfig(e, role, 300), PlanOnly: true},
			{
				// A policy added by hand: the plan reserves it, moves what must
				// move, and the apply goes through.
				PreConfig: func() { e.putInline(t, role, "platform-late", late) },
				Config:    reservationConfig(e, role, 300),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_policy_shards.fleet", plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(e.checkReservedInline(role), e.checkReachable(role, 300),
					func(s *terraform.State) error {
						a := s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes
						boot, _ := strconv.Atoi(s.RootModule().Resources["rdsgate_bootstrap_policy.proxy"].Primary.Attributes["size"])
						if a["reserved_inline"] != strconv.Itoa(size+lateSize+boot) {
							return fmt.Errorf("reserved_inline = %s, want %d", a["reserved_inline"], size+lateSize+boot)
						}
						return nil
					}),
			},
			{Config: reservationConfig(e, role, 300), PlanOnly: true},
		},
	})
}

// bootstrapPlan runs rdsgate_bootstrap_policy's plan for a new resource on
// role, the way Terraform calls it, and returns the planned model and the
// diagnostics.
func (e *env) bootstrapPlan(t *testing.T, role string, keep bool) (bootstrapPolicyModel, diag.Diagnostics) {
	t.Helper()
	ctx := context.Background()
	r := &bootstrapPolicyResource{p: &providerData{clients: e.c, defaultTags: map[string]string{}}}
	var sr fwresource.SchemaResponse
	r.Schema(ctx, fwresource.SchemaRequest{}, &sr)
	m := bootstrapPolicyModel{
		bootstrapInputs: bootstrapInputs{Types: stringList([]string{policies.TypeRDS}), Role: types.StringValue(role), User: types.StringNull(),
			Path: types.StringValue("/"), AccountID: types.StringValue("123456789012"), Partition: types.StringValue("aws"),
			AssumeRoleARNs: types.ListNull(types.StringType), AllowShardRoles: types.BoolValue(true), Manual: types.BoolValue(false)},
		ID: types.StringUnknown(), PrincipalARN: types.StringUnknown(), PolicyJSON: types.StringUnknown(), BoundaryARN: types.StringUnknown(),
		BoundaryJSON: types.StringUnknown(), Size: types.Int64Unknown(), PolicyName: types.StringValue(policies.BootstrapPolicyName),
		KeepExisting: types.BoolValue(keep),
	}
	plan := tfsdk.Plan{Schema: sr.Schema, Raw: tftypes.NewValue(sr.Schema.Type().TerraformType(ctx), nil)}
	if d := plan.Set(ctx, &m); d.HasError() {
		t.Fatalf("plan: %v", d)
	}
	req := fwresource.ModifyPlanRequest{Plan: plan, Config: tfsdk.Config{Schema: sr.Schema, Raw: plan.Raw},
		State: tfsdk.State{Schema: sr.Schema, Raw: tftypes.NewValue(sr.Schema.Type().TerraformType(ctx), nil)}}
	resp := fwresource.ModifyPlanResponse{Plan: plan}
	r.ModifyPlan(ctx, req, &resp)
	var out bootstrapPolicyModel
	if !resp.Diagnostics.HasError() {
		resp.Diagnostics.Append(resp.Plan.Get(ctx, &out)...)
	}
	return out, resp.Diagnostics
}

// TestBoundaryWarnsOfWhatItCuts: the trial's role has an agents policy
// (CloudWatch Logs, SSM) and a team's managed S3 policy. Setting the
// proxy's permissions boundary on it would make AWS deny all of them, and
// the plan showed only "+ boundary_arn". Now the plan warns with every
// action it would cut; with keep_existing_permissions the planned boundary
// keeps them and the warning goes.
func TestBoundaryWarnsOfWhatItCuts(t *testing.T) {
	e := newEnv(t)
	const role = "cut-proxy"
	doc, _ := foreignPolicy(t, 600)
	e.roleWithOthers(t, role, doc, 1)

	_, diags := e.bootstrapPlan(t, role, false)
	if diags.HasError() {
		t.Fatalf("plan failed: %v", diags)
	}
	var warning string
	for _, d := range diags.Warnings() {
		if strings.Contains(d.Summary(), "permissions boundary would cut") {
			warning = d.Detail()
		}
	}
	for _, want := range []string{"logs:PutLogEvents, logs:CreateLogStream, ssm:UpdateInstanceInformation, ssmmessages:CreateControlChannel (inline platform-agents)",
		"s3:GetObject (managed arn:aws:iam::123456789012:policy/cut-proxy-team-0)", "keep_existing_permissions = true", "manual = true"} {
		if !strings.Contains(warning, want) {
			t.Errorf("the warning lacks %q:\n%s", want, warning)
		}
	}

	kept, diags := e.bootstrapPlan(t, role, true)
	if diags.HasError() || len(diags.Warnings()) > 0 {
		t.Fatalf("with keep_existing_permissions: %v", diags)
	}
	boundary := kept.BoundaryJSON.ValueString()
	identity := []string{doc, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team-bucket/*"}]}`}
	for _, req := range [][2]string{
		{"logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/platform/service-000:*"},
		{"ssm:UpdateInstanceInformation", "*"},
		{"s3:GetObject", "arn:aws:s3:::team-bucket/x"},
	} {
		if !iamcheck.Allows(identity, boundary, req[0], req[1]) {
			t.Errorf("the planned boundary still denies %s on %s:\n%s", req[0], req[1], boundary)
		}
	}
}

// TestAccBoundaryKeepsExisting: applied, the kept boundary is what IAM
// holds on the role, and the role's own permissions still work by the
// independent model; a second plan is empty.
func TestAccBoundaryKeepsExisting(t *testing.T) {
	e := newEnv(t)
	const role = "keep-proxy"
	doc, _ := foreignPolicy(t, 600)
	e.roleWithOthers(t, role, doc, 0)
	config := e.providerHCL() + `
resource "rdsgate_bootstrap_policy" "proxy" {
  role                      = "keep-proxy"
  keep_existing_permissions = true
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config, Check: func(*terraform.State) error {
				ctx := context.Background()
				r, err := e.c.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(role)})
				if err != nil {
					return err
				}
				if r.Role.PermissionsBoundary == nil {
					return fmt.Errorf("no boundary on %s", role)
				}
				arn := r.Role.PermissionsBoundary.PermissionsBoundaryArn
				p, err := e.c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: arn})
				if err != nil {
					return err
				}
				v, err := e.c.IAM.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: arn, VersionId: p.Policy.DefaultVersionId})
				if err != nil {
					return err
				}
				boundary := decodeErr(aws.ToString(v.PolicyVersion.Document))
				if boundary == nil {
					return fmt.Errorf("unreadable boundary")
				}
				if !iamcheck.Allows([]string{doc}, string(boundary.JSON()), "logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:/platform/service-001:*") {
					return fmt.Errorf("with the boundary IAM holds, the role can no longer put its logs")
				}
				return nil
			}},
			{Config: config, PlanOnly: true},
		},
	})
}
