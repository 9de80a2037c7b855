package provider

// The provider plans what apply will do: stable listener ports, the
// provider block checked at plan time, and plans with no needless unknowns.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/policies"
)

// portsConfig is a proxy configuration for databases (shop* are MySQL)
// whose ports rdsgate_listener_ports keeps, with pins.
func portsConfig(names []string, pins string) string {
	var dbs []string
	for _, n := range names {
		engine, port := "postgres", 5432
		if strings.HasPrefix(n, "shop") {
			engine, port = "mysql", 3306
		}
		dbs = append(dbs, fmt.Sprintf(`{ name = %q, engine = %q, kind = "instance", region = "us-east-1", endpoint = "%s.abc.us-east-1.rds.amazonaws.com", port = %d, db_users = ["app"] }`, n, engine, n, port))
	}
	return fmt.Sprintf(`
provider "rdsgate" {
  region = "us-east-1"
}

locals {
  databases = [%s]
}

resource "rdsgate_listener_ports" "p" {
  databases = [for d in local.databases : d.name]
  pinned    = %s
}

data "rdsgate_proxy_config" "c" {
  databases = local.databases
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
  ports     = rdsgate_listener_ports.p.ports
}
`, strings.Join(dbs, ",\n    "), pins)
}

func ports(m map[string]int) knownvalue.Check {
	checks := map[string]knownvalue.Check{}
	for k, v := range m {
		checks[k] = knownvalue.Int64Exact(int64(v))
	}
	return knownvalue.MapExact(checks)
}

// The trial that found it: adding a database moved MySQL "shop" to another
// port and gave its port to a PostgreSQL database. With
// rdsgate_listener_ports the plan shows the exact ports, an added database
// moves none, a removed one frees its port, and a pin that would take
// another database's port fails at plan time.
func TestAccListenerPortsNeverMove(t *testing.T) {
	t.Parallel()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config: portsConfig([]string{"ledger", "orders", "shop"}, "{}"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"), ports(map[string]int{"ledger": 15432, "orders": 15433, "shop": 15434})),
				}},
				Check: resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.shop", "127.0.0.1:15434"),
			},
			{
				// "analytics" sorts first; name order would have moved all three.
				Config: portsConfig([]string{"analytics", "ledger", "orders", "shop"}, "{}"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_listener_ports.p", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"),
						ports(map[string]int{"analytics": 15435, "ledger": 15432, "orders": 15433, "shop": 15434})),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.shop", "127.0.0.1:15434"),
					resource.TestCheckResourceAttr("data.rdsgate_proxy_config.c", "listeners.analytics", "127.0.0.1:15435"),
				),
			},
			{
				// A pin onto ledger's port: refused at plan, naming both.
				Config:      portsConfig([]string{"analytics", "ledger", "orders", "shop"}, "{ analytics = 15432 }"),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`(?s)port 15432 is pinned for analytics, but ledger listens on it\s+already`),
			},
			{
				// ledger goes, zeta comes: zeta takes the freed port, nobody moves.
				Config: portsConfig([]string{"analytics", "orders", "shop", "zeta"}, "{ shop = 3307 }"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue("rdsgate_listener_ports.p", tfjsonpath.New("ports"),
						ports(map[string]int{"analytics": 15435, "orders": 15433, "shop": 3307, "zeta": 15432})),
				}},
			},
			{
				// Applied again as is: nothing to do.
				Config:             portsConfig([]string{"analytics", "orders", "shop", "zeta"}, "{ shop = 3307 }"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: false,
			},
		},
	})
}

// TestAccProviderBlockValidated: what AWS would refuse at apply (after
// retries, as an HTTP 500 from an unknown region's endpoint) fails at plan,
// with the attribute and a suggestion.
func TestAccProviderBlockValidated(t *testing.T) {
	t.Parallel()
	config := func(provider string) string {
		return "provider \"rdsgate\" {\n" + provider + "\n}\n" + `
resource "rdsgate_listener_ports" "p" {
  databases = ["orders"]
}
`
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config(`region = "us-eats-1"`), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Unknown region.*region = "us-eats-1".*unknown region "us-eats-1" \(did you mean\s+"us-east-1"\?\)`)},
			{Config: config("region = \"us-east-1\"\nendpoints {\n  iam = \"localhost:5000\"\n}"), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Not an endpoint URL.*"localhost:5000" is not an http\(s\) URL`)},
			{Config: config("region = \"us-east-1\"\nassume_role {\n  role_arn = \"arn:aws:iam::123456789012:user/deployer\"\n}"), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Not a role ARN`)},
		},
	})
}

// TestAccQuietPlans: a label or db user changed on one database plans as
// exactly that. rdsgate_database keeps what RDS reported (engine, version,
// port, IAM authentication) instead of "known after apply", so the shard
// documents and the proxy configuration downstream are known at plan
// time, and the reviewer sees the exact ARN added.
func TestAccQuietPlans(t *testing.T) {
	e := newEnv(t)
	e.instance(t, "orders", "postgres", true)
	e.instance(t, "billing", "mysql", true)
	config := func(ordersUsers, billingEnv string) string {
		return e.providerHCL() + fmt.Sprintf(`
resource "rdsgate_access_role" "proxy" {
  name             = "quiet-proxy"
  trusted_services = ["ec2.amazonaws.com"]
}

resource "rdsgate_database" "orders" {
  identifier = "orders"
  db_users   = %s
}

resource "rdsgate_database" "billing" {
  identifier = "billing"
  db_users   = ["app"]
  labels     = { env = %q }
}

locals {
  dbs = [for d in [rdsgate_database.orders, rdsgate_database.billing] : {
    name = d.name, identifier = d.identifier, engine = d.engine, kind = d.kind, resource_id = d.resource_id,
    region = d.region, account_id = d.account_id, endpoint = d.endpoint, port = d.port, db_users = d.db_users, labels = d.labels
  }]
}

resource "rdsgate_policy_shards" "p" {
  base_role = rdsgate_access_role.proxy.name
  databases = local.dbs
}

data "rdsgate_proxy_config" "c" {
  databases = local.dbs
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
}

output "config" {
  value = data.rdsgate_proxy_config.c.config_json
}
`, ordersUsers, billingEnv)
	}
	known := func(addr, attr string) plancheck.PlanCheck {
		return plancheck.ExpectKnownValue(addr, tfjsonpath.New(attr), knownvalue.NotNull())
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config(`["app"]`, "dev")},
			{
				// A label: the database updates in place, nothing turns unknown.
				Config: config(`["app"]`, "prod"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_database.billing", plancheck.ResourceActionUpdate),
					known("rdsgate_database.billing", "engine"), known("rdsgate_database.billing", "engine_version"),
					known("rdsgate_database.billing", "port"), known("rdsgate_database.billing", "iam_auth_enabled"),
					known("rdsgate_policy_shards.p", "documents"), known("rdsgate_policy_shards.p", "database_roles"),
					plancheck.ExpectKnownOutputValue("config", knownvalue.StringRegexp(regexp.MustCompile(`"env": "prod"`))),
				}},
			},
			{
				// A db user: the shard document plans with the exact ARN added.
				Config: config(`["app", "readonly"]`, "prod"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_policy_shards.p", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("rdsgate_policy_shards.p", tfjsonpath.New("documents"),
						knownvalue.MapPartial(map[string]knownvalue.Check{"role/quiet-proxy/inline/rdsgate-connect": knownvalue.StringRegexp(regexp.MustCompile(`dbuser:db-[A-Za-z0-9]+/readonly`))})),
					known("rdsgate_database.orders", "port"),
				}},
			},
			{Config: config(`["app", "readonly"]`, "prod"), PlanOnly: true},
		},
	})
}

// TestAccManyBadDatabasesOneError: 300 databases with a malformed resource
// id (one broken expression) are three errors and one that lists the rest,
// not 300 that say the same thing.
func TestAccManyBadDatabasesOneError(t *testing.T) {
	t.Parallel()
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{{
			Config: `
provider "rdsgate" {
  region = "us-east-1"
}

resource "rdsgate_policy_shards" "p" {
  base_role  = "proxy"
  account_id = "123456789012"
  databases = [for i in range(300) : {
    name = format("db-%03d", i), engine = "postgres", kind = "instance", resource_id = format("orders-%d", i),
    region = "us-east-1", account_id = "123456789012", db_users = ["app"]
  }]
}
`,
			PlanOnly:    true,
			ExpectError: regexp.MustCompile(`(?s)databases\[2\] \("db-002"\): resource_id.*297 more databases have a problem with\s+resource_id like the ones above:\s+databases\[3\] \("db-003"\),.*and 277\s+more`),
		}},
	})
}

func TestAddInputErrorsGroups(t *testing.T) {
	t.Parallel()
	var list []*policies.InputError
	for i := range 300 {
		list = append(list, &policies.InputError{Entry: fmt.Sprintf("databases[%d]", i), Index: i, Field: "resource_id", Msg: "malformed"})
	}
	list = append(list, &policies.InputError{Entry: "databases[7]", Index: 7, Field: "port", Msg: "not a port"})
	var diags diagsT
	addInputErrors(&diags, list)
	if n := diags.ErrorsCount(); n != 5 {
		t.Fatalf("%d errors for 300 of one kind and 1 of another, want 3 + 1 grouped + 1", n)
	}
	diags = nil
	addInputErrors(&diags, list[:4])
	if n := diags.ErrorsCount(); n != 4 {
		t.Fatalf("%d errors for 4, want each on its own (grouping one saves nothing)", n)
	}
}

// reformatTrust rewrites a role's trust policy with the same meaning in
// another form: Action values as lists, indented.
func (e *env) reformatTrust(t *testing.T, role string) {
	t.Helper()
	ctx := context.Background()
	out, err := e.c.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(role)})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, aws.ToString(out.Role.AssumeRolePolicyDocument))
	for i := range doc.Statements {
		doc.Statements[i].Action.Single = false
	}
	var pretty map[string]any
	_ = json.Unmarshal(doc.JSON(), &pretty)
	text, _ := json.MarshalIndent(pretty, "", "    ")
	if _, err := e.c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(role), PolicyDocument: aws.String(string(text))}); err != nil {
		t.Fatal(err)
	}
}

// TestAccImportIsQuiet: a role and a trust statement that IAM holds in
// another form with the same meaning import as a no-op (the plan used to
// show ["sts:AssumeRole"] -> "sts:AssumeRole" and exit 2). They are made
// the way the provider makes them (bootstrap.EnsureRole, PutRoleTrust),
// rewritten by hand, then imported with import blocks, whose plan the
// harness requires to be a no-op import.
func TestAccImportIsQuiet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("imp-app"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Sid":"Other","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	st, err := bootstrap.EnsureRole(ctx, e.c.IAM, bootstrap.RoleSpec{Name: "imp-proxy", Path: "/",
		Trust: policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}}, Tags: map[string]string{"managed-by": "terraform"}})
	if err != nil || st == nil {
		t.Fatalf("role: %v", err)
	}
	if err := bootstrap.PutRoleTrust(ctx, e.c.IAM, bootstrap.RoleTrust{RoleName: "imp-app",
		Spec: policies.TrustSpec{RoleARNs: []string{st.ARN}, ExternalID: "ext-imp", Sid: "RdsgateTrust"}}); err != nil {
		t.Fatalf("trust: %v", err)
	}
	e.reformatTrust(t, "imp-proxy")
	e.reformatTrust(t, "imp-app")
	config := e.importHCL() + `
resource "rdsgate_access_role" "r" {
  name             = "imp-proxy"
  trusted_services = ["ec2.amazonaws.com"]
}

resource "rdsgate_role_trust" "t" {
  role_name         = "imp-app"
  trusted_role_arns = ["` + st.ARN + `"]
  external_id       = "ext-imp"
}
`
	for _, c := range []struct{ addr, id string }{{"rdsgate_access_role.r", "imp-proxy"}, {"rdsgate_role_trust.t", "imp-app/RdsgateTrust"}} {
		resource.Test(t, resource.TestCase{
			ProtoV6ProviderFactories: factories,
			Steps:                    []resource.TestStep{{Config: config, ResourceName: c.addr, ImportState: true, ImportStateKind: resource.ImportBlockWithID, ImportStateId: c.id}},
		})
	}
}

// importHCL is the provider block for import steps, which get no
// required_providers from the harness: it names the provider.
func (e *env) importHCL() string {
	return `
terraform {
  required_providers {
    rdsgate = { source = "registry.terraform.io/rdsgate/rdsgate" }
  }
}
` + e.providerHCL()
}

// restyle writes a document in another form with the same meaning:
// statements reversed, single actions as lists, indented.
func restyle(t *testing.T, s string) string {
	t.Helper()
	doc := decode(t, s)
	for i, j := 0, len(doc.Statements)-1; i < j; i, j = i+1, j-1 {
		doc.Statements[i], doc.Statements[j] = doc.Statements[j], doc.Statements[i]
	}
	for i := range doc.Statements {
		doc.Statements[i].Action.Single = false
		doc.Statements[i].Resource.Single = false
	}
	var pretty map[string]any
	_ = json.Unmarshal(doc.JSON(), &pretty)
	text, _ := json.MarshalIndent(pretty, "", "    ")
	return string(text)
}

// restyleInline rewrites a role's inline policy with restyle.
func (e *env) restyleInline(t *testing.T, role, name string) {
	t.Helper()
	ctx := context.Background()
	out, err := e.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name),
		PolicyDocument: aws.String(restyle(t, aws.ToString(out.PolicyDocument)))}); err != nil {
		t.Fatal(err)
	}
}

// restyleManaged makes a restyled copy of a managed policy's document its
// default version.
func (e *env) restyleManaged(t *testing.T, arn string) {
	t.Helper()
	ctx := context.Background()
	p, err := e.c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.c.IAM.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: p.Policy.DefaultVersionId})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.IAM.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(arn), SetAsDefault: true,
		PolicyDocument: aws.String(restyle(t, aws.ToString(v.PolicyVersion.Document)))}); err != nil {
		t.Fatal(err)
	}
}

// TestAccImportIsQuietPolicies: the bootstrap policy with its boundary (as
// create-iam writes them) and connect shards (as shards apply writes them,
// inline and managed) that IAM holds restyled import as a no-op: the
// harness's import block step fails on any planned change.
func TestAccImportIsQuietPolicies(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const role = "imp-pol"
	if _, err := e.c.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	bp, err := policies.NewBootstrapPolicy(policies.BootstrapOptions{Kind: policies.PrincipalRole, Name: role, AccountID: "123456789012", Path: "/",
		AssumeRoleARNs: []string{policies.ShardRolesARN("aws", "123456789012", role)}})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := bootstrap.PlanBootstrap(ctx, e.c, bp)
	if err == nil {
		err = bootstrap.ApplyChanges(ctx, changes)
	}
	if err != nil {
		t.Fatal(err)
	}
	// 120 databases: the inline policy and a managed one. The reservation
	// leaves room for the bootstrap policy restyled below (arrays for
	// single actions are longer as IAM counts them): the provider reserves
	// what IAM holds, and a layout that no longer fits would rightly move.
	inv := &policies.Inventory{}
	for i := range 120 {
		inv.Databases = append(inv.Databases, policies.Database{Name: fmt.Sprintf("db-%03d", i), Engine: "postgres", Kind: policies.KindInstance,
			ResourceID: fmt.Sprintf("db-%026d", i), Region: "us-east-1", AccountID: "123456789012", DBUsers: []string{"app"}})
	}
	plan, err := policies.NewPlan(policies.PlanInput{Inventory: inv, Quotas: policies.DefaultQuotas(),
		Target: policies.Target{Kind: policies.PrincipalRole, Name: role, Path: "/", AccountID: "123456789012", MaxShardRoles: 10,
			ReservedInline: bp.Policy.Size() + 300}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.ApplyPlan(ctx, e.c, plan, bootstrap.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	managed := 0
	for _, pp := range plan.Principals {
		for _, p := range pp.ManagedPolicies {
			e.restyleManaged(t, p.ARN)
			managed++
		}
	}
	if managed == 0 {
		t.Fatal("the plan has no managed policy: the fleet is too small to test one")
	}
	e.restyleInline(t, role, policies.InlinePolicyName)
	e.restyleInline(t, role, policies.BootstrapPolicyName)
	e.restyleManaged(t, bp.BoundaryARN)

	config := e.importHCL() + `
resource "rdsgate_bootstrap_policy" "b" {
  role = "imp-pol"
}

resource "rdsgate_policy_shards" "s" {
  base_role = "imp-pol"
  databases = [for i in range(120) : {
    name = format("db-%03d", i), engine = "postgres", kind = "instance", resource_id = format("db-%026d", i),
    region = "us-east-1", account_id = "123456789012", db_users = ["app"]
  }]
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{{Config: config, ResourceName: "rdsgate_bootstrap_policy.b", ImportState: true,
			ImportStateKind: resource.ImportBlockWithID, ImportStateId: "role/imp-pol"}},
	})
	// IAM knows the databases by resource id only, so database_roles (by
	// name) and stats come from the configuration at the first plan after
	// an import: an update of those outputs alone, which writes nothing.
	restyled := e.inlineText(t, role, policies.InlinePolicyName)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config, ResourceName: "rdsgate_policy_shards.s", ImportState: true, ImportStateId: "role/imp-pol", ImportStatePersist: true},
			{
				Config: config,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_policy_shards.s", plancheck.ResourceActionUpdate),
					unchanged{addr: "rdsgate_policy_shards.s", attrs: []string{"documents", "shard_role_arns", "base_arn", "id", "account_id"}},
				}},
				Check: func(*terraform.State) error {
					if now := e.inlineText(t, role, policies.InlinePolicyName); now != restyled {
						return fmt.Errorf("the apply after the import rewrote the inline policy")
					}
					return nil
				},
			},
			{Config: config, PlanOnly: true},
		},
	})
}

func (e *env) inlineText(t *testing.T, role, name string) string {
	t.Helper()
	out, err := e.c.IAM.GetRolePolicy(context.Background(), &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.PolicyDocument)
}

// unchanged fails when a planned change of addr changes one of attrs.
type unchanged struct {
	addr  string
	attrs []string
}

func (c unchanged) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Address != c.addr {
			continue
		}
		before, _ := rc.Change.Before.(map[string]any)
		after, _ := rc.Change.After.(map[string]any)
		for _, k := range c.attrs {
			if a, b := fmt.Sprint(after[k]), fmt.Sprint(before[k]); a != b {
				resp.Error = fmt.Errorf("%s.%s changes:\n%.300s\n->\n%.300s", c.addr, k, b, a)
				return
			}
		}
		return
	}
	resp.Error = fmt.Errorf("no planned change of %s", c.addr)
}
