package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
)

const foreignTrust = `{"Version":"2012-10-17","Statement":[{"Sid":"Lambda","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// accessConfig is a whole setup: the proxy's role and bootstrap policy,
// two real (emulated) databases, a synthetic fleet of n more, the shards
// over the proxy role and shard roles, trust on a role rdsgate does not own,
// and the proxy's configuration.
func accessConfig(e *env, n int, extraTrusted string) string {
	trusted := `["ec2.amazonaws.com"]`
	roles := "[]"
	if extraTrusted != "" {
		roles = fmt.Sprintf("[%q]", extraTrusted)
	}
	return e.providerHCL() + fmt.Sprintf(`
resource "rdsgate_access_role" "proxy" {
  name              = "rdsgate-proxy"
  path              = "/"
  description       = "rdsgate proxy"
  trusted_services  = %s
  trusted_role_arns = %s
  tags              = { team = "data" }
}

resource "rdsgate_bootstrap_policy" "proxy" {
  role  = rdsgate_access_role.proxy.name
  types = ["rds", "rds-proxy"]
}

resource "rdsgate_database" "orders" {
  identifier = "orders"
  db_users   = ["app", "readonly"]
  labels     = { env = "prod" }
}

resource "rdsgate_database" "billing" {
  identifier = "billing"
  db_users   = ["app", "readonly"]
}

locals {
  synthetic = [for i in range(%d) : {
    name        = format("fleet-%%04d", i)
    engine      = "postgres"
    kind        = "instance"
    resource_id = format("db-%%026d", i)
    region      = "us-east-1"
    account_id  = "123456789012"
    endpoint    = format("fleet-%%04d.abc.us-east-1.rds.amazonaws.com", i)
    port        = 5432
    db_users    = ["app", "readonly"]
  }]
  real = [for d in [rdsgate_database.orders, rdsgate_database.billing] : {
    name = d.name, identifier = d.identifier, engine = d.engine, kind = d.kind, resource_id = d.resource_id,
    region = d.region, account_id = d.account_id, endpoint = d.endpoint, port = d.port, db_users = d.db_users, labels = d.labels
  }]
}

resource "rdsgate_policy_shards" "fleet" {
  base_role       = rdsgate_access_role.proxy.name
  databases       = concat(local.real, local.synthetic)
  max_managed     = 2
  reserved_inline = rdsgate_bootstrap_policy.proxy.size
  depends_on      = [rdsgate_bootstrap_policy.proxy]
}

resource "rdsgate_role_trust" "app" {
  role_name         = "app-reader"
  trusted_role_arns = [rdsgate_access_role.proxy.arn]
  external_id       = "rdsgate-ext"
}

data "rdsgate_proxy_config" "proxy" {
  databases      = local.real
  database_roles = rdsgate_policy_shards.fleet.database_roles
  base_arn       = rdsgate_policy_shards.fleet.base_arn
  ca_bundle      = "/etc/rdsgate/rds-ca.pem"
}

data "rdsgate_bootstrap_policy_document" "proxy" {
  role       = "rdsgate-proxy"
  account_id = "123456789012"
  types      = ["rds", "rds-proxy"]
}
`, trusted, roles, n)
}

func TestAccAccessEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.instance(t, "orders", "postgres", false)
	e.instance(t, "billing", "mysql", true)
	if _, err := e.c.IAM.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String("app-reader"), AssumeRolePolicyDocument: aws.String(foreignTrust)}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var firstDocuments, documents map[string]string

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy:             e.checkDestroyed,
		Steps: []resource.TestStep{
			{
				Config: accessConfig(e, 300, ""),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("rdsgate_database.orders", "iam_auth_enabled", "true"),
					resource.TestCheckResourceAttr("rdsgate_database.orders", "engine", "postgres"),
					resource.TestCheckResourceAttrSet("rdsgate_database.orders", "resource_id"),
					resource.TestCheckResourceAttr("rdsgate_access_role.proxy", "arn", "arn:aws:iam::123456789012:role/rdsgate-proxy"),
					resource.TestCheckResourceAttr("rdsgate_access_role.proxy", "tags_all.managed-by", "terraform"),
					resource.TestCheckResourceAttr("rdsgate_policy_shards.fleet", "stats.databases", "302"),
					resource.TestCheckResourceAttrWith("rdsgate_policy_shards.fleet", "shard_role_arns.#", atLeast(1)),
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.proxy", "config_json", contains(`"name": "orders"`, `"ca_bundle": "/etc/rdsgate/rds-ca.pem"`)),
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.proxy", "systemd_unit", contains("ExecStart=/usr/local/bin/rdsgate proxy start --config /etc/rdsgate/proxy.json")),
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.proxy", "cloud_init", contains("#cloud-config", "systemctl")),
					resource.TestCheckResourceAttrWith("data.rdsgate_bootstrap_policy_document.proxy", "json", contains("iam:PutRolePolicy", "sts:AssumeRole", "rdsgate-proxy-connect-*")),
					e.checkReachable("rdsgate-proxy", 302),
					e.checkTrust("app-reader", 2),
					func(s *terraform.State) error {
						firstDocuments = prefixed(s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes, "documents.")
						if len(firstDocuments) == 0 {
							return fmt.Errorf("no documents in state")
						}
						return nil
					},
				),
			},
			{
				// Ten more databases and a widened trust: incremental, nothing moves.
				Config: accessConfig(e, 310, "arn:aws:iam::123456789012:role/ops"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_policy_shards.fleet", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_access_role.proxy", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_bootstrap_policy.proxy", plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("rdsgate_policy_shards.fleet", "stats.databases", "312"),
					resource.TestCheckResourceAttr("rdsgate_policy_shards.fleet", "stats.moved", "0"),
					resource.TestCheckResourceAttrWith("rdsgate_access_role.proxy", "trust_policy", contains("arn:aws:iam::123456789012:role/ops")),
					e.checkReachable("rdsgate-proxy", 312),
					func(s *terraform.State) error {
						return incremental(firstDocuments, prefixed(s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes, "documents."), 10)
					},
				),
			},
			{
				// Changes made by hand show as a diff and are put back: a
				// statement added to the inline shard, IAM auth turned off,
				// the trust narrowed, rdsgate's trust statement removed.
				PreConfig: func() {
					e.handEdit(t, ctx)
				},
				Config: accessConfig(e, 310, "arn:aws:iam::123456789012:role/ops"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("rdsgate_policy_shards.fleet", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_database.orders", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_access_role.proxy", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_role_trust.app", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rdsgate_bootstrap_policy.proxy", plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					e.checkReachable("rdsgate-proxy", 312),
					e.checkTrust("app-reader", 2),
					e.checkNoHandEdits(),
					func(s *terraform.State) error {
						documents = prefixed(s.RootModule().Resources["rdsgate_policy_shards.fleet"].Primary.Attributes, "documents.")
						return nil
					},
				),
			},
			{
				// Reordered and reformatted by hand: the same meaning, no diff.
				PreConfig: func() { e.reformat(t, ctx) },
				Config:    accessConfig(e, 310, "arn:aws:iam::123456789012:role/ops"),
				PlanOnly:  true,
			},
			{ResourceName: "rdsgate_access_role.proxy", ImportState: true, ImportStateId: "rdsgate-proxy", ImportStateVerify: true},
			{ResourceName: "rdsgate_role_trust.app", ImportState: true, ImportStateId: "app-reader/RdsgateTrust", ImportStateVerify: true},
			{ResourceName: "rdsgate_database.orders", ImportState: true, ImportStateId: "us-east-1/instance/orders", ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"db_users", "labels", "apply_immediately"}},
			{ResourceName: "rdsgate_bootstrap_policy.proxy", ImportState: true, ImportStateId: "role/rdsgate-proxy", ImportStateVerify: true,
				ImportStateVerifyIdentifierAttribute: "principal_arn", ImportStateVerifyIgnore: []string{"types", "policy_json", "size"}},
			{ResourceName: "rdsgate_policy_shards.fleet", ImportState: true, ImportStateId: "role/rdsgate-proxy", ImportStateVerify: true,
				// Documents are compared by meaning: IAM holds the reformatted
				// text from the step before.
				ImportStateVerifyIgnore: []string{"databases", "reserved_inline", "max_managed", "stats", "database_roles", "documents"},
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					got := prefixed(states[0].Attributes, "documents.")
					if len(got) != len(documents) || len(got) < 3 {
						return fmt.Errorf("imported %d documents, state had %d", len(got), len(documents))
					}
					for k, v := range documents {
						a, err1 := policies.Parse([]byte(v))
						b, err2 := policies.Parse([]byte(got[k]))
						if err1 != nil || err2 != nil || !policies.Equivalent(a, b) {
							return fmt.Errorf("document %s imported as %q, was %q", k, got[k], v)
						}
					}
					return nil
				}},
		},
	})
}

// incremental checks that adding added databases changed the documents
// as the planner promises: every document is still there with every
// resource it granted, the new grants are in one or two documents (new or
// changed), and the rest are byte for byte the same.
func incremental(before, after map[string]string, added int) error {
	resources := func(doc string) ([]string, error) {
		var d struct{ Statement []struct{ Resource any } }
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return nil, err
		}
		var out []string
		for _, st := range d.Statement {
			switch r := st.Resource.(type) {
			case string:
				out = append(out, r)
			case []any:
				for _, x := range r {
					out = append(out, fmt.Sprint(x))
				}
			}
		}
		return out, nil
	}
	touched, grown := 0, 0
	for k, v := range after {
		old, ok := before[k]
		if ok && old == v {
			continue
		}
		touched++
		now, err := resources(v)
		if err != nil {
			return fmt.Errorf("document %s: %v", k, err)
		}
		was := []string{}
		if ok {
			if was, err = resources(old); err != nil {
				return fmt.Errorf("document %s before: %v", k, err)
			}
		}
		for _, r := range was {
			if !slices.Contains(now, r) {
				return fmt.Errorf("document %s lost %s although databases were only added", k, r)
			}
		}
		grown += len(now) - len(was)
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			return fmt.Errorf("document %s is gone although databases were only added", k)
		}
	}
	if touched == 0 || touched > 2 || grown < added {
		return fmt.Errorf("adding %d databases changed %d documents and added %d resources; want 1 or 2 documents and at least %d resources", added, touched, grown, added)
	}
	return nil
}

func prefixed(attrs map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range attrs {
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "%" {
			out[rest] = v
		}
	}
	return out
}

func atLeast(n int) resource.CheckResourceAttrWithFunc {
	return func(v string) error {
		var got int
		if _, err := fmt.Sscan(v, &got); err != nil || got < n {
			return fmt.Errorf("got %q, want at least %d", v, n)
		}
		return nil
	}
}

func contains(parts ...string) resource.CheckResourceAttrWithFunc {
	return func(v string) error {
		for _, p := range parts {
			if !strings.Contains(v, p) {
				return fmt.Errorf("%q not in:\n%s", p, v)
			}
		}
		return nil
	}
}

// checkReachable judges what IAM holds with rdsgate's own evaluator: the
// base role reaches every database, directly or through a shard role.
func (e *env) checkReachable(base string, want int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx := context.Background()
		r := s.RootModule().Resources["rdsgate_policy_shards.fleet"]
		roles := map[string]string{}
		for k, v := range r.Primary.Attributes {
			if name, ok := strings.CutPrefix(k, "database_roles."); ok && name != "%" {
				roles[name] = v
			}
		}
		ids := map[string]string{}
		for i := 0; ; i++ {
			name, ok := r.Primary.Attributes[fmt.Sprintf("databases.%d.name", i)]
			if !ok {
				break
			}
			ids[name] = r.Primary.Attributes[fmt.Sprintf("databases.%d.resource_id", i)]
		}
		if len(roles) != want {
			return fmt.Errorf("%d databases in database_roles, want %d", len(roles), want)
		}
		plan := &policies.Plan{Base: policies.PrincipalRef{Kind: policies.PrincipalRole, Name: base, ARN: "arn:aws:iam::123456789012:role/" + base},
			AccountID: "123456789012", Partition: "aws", Settings: policies.PlanSettings{ShardRolePath: policies.ShardRolePath(base)}}
		obs, err := bootstrap.ReadState(ctx, e.c.IAM, plan)
		if err != nil {
			return err
		}
		state := obs.Plan.State()
		missing := 0
		for name, via := range roles {
			arn := policies.DBUserARN{Partition: "aws", Region: "us-east-1", AccountID: "123456789012", ResourceID: ids[name], DBUser: "app"}.String()
			if len(state.ConnectVia(plan.Base.ARN, arn, 1, nil)) == 0 {
				missing++
				if missing < 3 {
					fmt.Printf("unreachable: %s (recorded via %s)\n", name, via)
				}
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d databases unreachable by IAM's rules", missing)
		}
		return nil
	}
}

func (e *env) checkTrust(role string, statements int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		r, err := bootstrap.ReadRole(context.Background(), e.c.IAM, role)
		if err != nil || r == nil {
			return fmt.Errorf("role %s: %v", role, err)
		}
		if len(r.Trust.Statements) != statements {
			return fmt.Errorf("role %s has %d trust statements, want %d: %s", role, len(r.Trust.Statements), statements, r.Trust.JSON())
		}
		return nil
	}
}

func (e *env) handEdit(t *testing.T, ctx context.Context) {
	t.Helper()
	out, err := e.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, aws.ToString(out.PolicyDocument))
	// One database taken out and a statement added, so the edited policy
	// still fits next to the bootstrap policy when apply puts that back.
	last := &doc.Statements[len(doc.Statements)-1]
	last.Resource.List = last.Resource.List[:len(last.Resource.List)-1]
	doc.Statements = append(doc.Statements, policies.Statement{Effect: policies.Allow, Action: policies.One("rds-db:connect"),
		Resource: policies.One("arn:aws:rds-db:us-east-1:123456789012:dbuser:db-HANDADDEDHANDADDEDHANDADDED/admin")})
	if _, err := e.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName),
		PolicyDocument: aws.String(string(doc.JSON()))}); err != nil {
		t.Fatal(err)
	}
	bp, err := e.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.BootstrapPolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	bdoc := decode(t, aws.ToString(bp.PolicyDocument))
	bdoc.Statements = bdoc.Statements[1:] // narrowed
	if _, err := e.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.BootstrapPolicyName),
		PolicyDocument: aws.String(string(bdoc.JSON()))}); err != nil {
		t.Fatal(err)
	}
	api, _ := e.c.RDS("us-east-1")
	if _, err := api.ModifyDBInstance(ctx, &rds.ModifyDBInstanceInput{DBInstanceIdentifier: aws.String("orders"), EnableIAMDatabaseAuthentication: aws.Bool(false), ApplyImmediately: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	narrowed := policies.TrustSpec{Services: []string{"ec2.amazonaws.com"}}.Document()
	if _, err := e.c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyDocument: aws.String(string(narrowed.JSON()))}); err != nil {
		t.Fatal(err)
	}
	if err := bootstrap.RemoveRoleTrust(ctx, e.c.IAM, "app-reader", "RdsgateTrust"); err != nil {
		t.Fatal(err)
	}
}

// reformat rewrites documents with the same meaning in another form:
// statements reversed, lists where strings were.
func (e *env) reformat(t *testing.T, ctx context.Context) {
	t.Helper()
	out, err := e.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, aws.ToString(out.PolicyDocument))
	for i, j := 0, len(doc.Statements)-1; i < j; i, j = i+1, j-1 {
		doc.Statements[i], doc.Statements[j] = doc.Statements[j], doc.Statements[i]
	}
	for i := range doc.Statements {
		doc.Statements[i].Action.Single = false
	}
	var pretty map[string]any
	_ = json.Unmarshal(doc.JSON(), &pretty)
	text, _ := json.MarshalIndent(pretty, "", "    ")
	if _, err := e.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName),
		PolicyDocument: aws.String(string(text))}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) checkNoHandEdits() resource.TestCheckFunc {
	return func(*terraform.State) error {
		out, err := e.c.IAM.GetRolePolicy(context.Background(), &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName)})
		if err != nil {
			return err
		}
		if strings.Contains(aws.ToString(out.PolicyDocument), "HANDADDED") {
			return fmt.Errorf("the statement added by hand is still there")
		}
		api, _ := e.c.RDS("us-east-1")
		db, err := bootstrap.DescribeDatabase(context.Background(), api, policies.KindInstance, "orders")
		if err != nil || db == nil || !db.IAMAuthEnabled {
			return fmt.Errorf("IAM auth on orders was not turned back on: %+v %v", db, err)
		}
		return nil
	}
}

func decode(t *testing.T, s string) *policies.Document {
	t.Helper()
	d := decodeErr(s)
	if d == nil {
		t.Fatalf("not a policy document: %.200s", s)
	}
	return d
}

// decodeErr reads a policy document as IAM returns it (URL-encoded or
// not); nil when it is not one.
func decodeErr(s string) *policies.Document {
	if strings.HasPrefix(s, "%7B") {
		var err error
		if s, err = url.PathUnescape(s); err != nil {
			return nil
		}
	}
	d, err := policies.Parse([]byte(s))
	if err != nil {
		return nil
	}
	return d
}

// checkDestroyed runs after terraform destroy: everything rdsgate made is
// gone and the foreign role's own trust is as it was.
func (e *env) checkDestroyed(*terraform.State) error {
	ctx := context.Background()
	if r, err := bootstrap.ReadRole(ctx, e.c.IAM, "rdsgate-proxy"); err != nil || r != nil {
		return fmt.Errorf("the proxy role is still there: %v", err)
	}
	roles, err := e.c.IAM.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String("/rdsgate/")})
	if err != nil {
		return err
	}
	if len(roles.Roles) > 0 {
		return fmt.Errorf("%d shard roles left", len(roles.Roles))
	}
	pols, err := e.c.IAM.ListPolicies(ctx, &iam.ListPoliciesInput{PathPrefix: aws.String("/rdsgate/")})
	if err != nil {
		return err
	}
	if len(pols.Policies) > 0 {
		return fmt.Errorf("%d rdsgate policies left, first %s", len(pols.Policies), aws.ToString(pols.Policies[0].Arn))
	}
	r, err := bootstrap.ReadRole(ctx, e.c.IAM, "app-reader")
	if err != nil || r == nil {
		return fmt.Errorf("the foreign role went away: %v", err)
	}
	orig, _ := policies.Parse([]byte(foreignTrust))
	if !policies.Equivalent(r.Trust, orig) {
		return fmt.Errorf("the foreign role's trust was not restored: %s", r.Trust.JSON())
	}
	return nil
}

// Invalid configuration fails at plan, naming the attribute.
func TestAccValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, hcl, want string
	}{
		{"session", `resource "rdsgate_access_role" "r" {
  name = "x"
  trusted_services = ["ec2.amazonaws.com"]
  max_session_duration = 60
}`, `(?s)max_session_duration = 60.*outside IAM's range`},
		{"trust", `resource "rdsgate_access_role" "r" {
  name = "x"
  trusted_role_arns = ["arn:aws:iam::123456789012:policy/p"]
}`, `(?s)trusted_role_arns.*a policy cannot assume a role`},
		{"nobody", `resource "rdsgate_access_role" "r" { name = "x" }`, `(?s)nobody could assume the role`},
		{"db users", `resource "rdsgate_database" "d" {
  identifier = "orders"
  db_users   = ["app", "app"]
}`, `(?s)db_users.*"app" is listed twice`},
		{"kind", `resource "rdsgate_database" "d" {
  identifier = "orders"
  kind       = "proxy"
  db_users   = ["app"]
}`, `(?s)kind\s+= "proxy".*use instance`},
		{"engine", `resource "rdsgate_policy_shards" "s" {
  base_role = "proxy"
  databases = [{ name = "a", engine = "postgress", kind = "instance", resource_id = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ", region = "us-east-1", account_id = "123456789012", db_users = ["app"] }]
}`, `(?s)databases\[0\].*did you mean\s+"postgres"`},
		{"principal", `resource "rdsgate_policy_shards" "s" {
  base_role = "proxy"
  user      = "proxy"
  databases = []
}`, `(?s)give base_role or user, not both`},
		{"no fit", `resource "rdsgate_policy_shards" "s" {
  user            = "proxy"
  max_managed     = 1
  max_shard_roles = 0
  databases = [for i in range(400) : { name = format("d%d", i), engine = "postgres", kind = "instance", resource_id = format("db-%026d", i), region = "us-east-1", account_id = "123456789012", db_users = ["app", "readonly", "report"] }]
}`, `(?s)No shard plan fits`},
		{"bootstrap type", `resource "rdsgate_bootstrap_policy" "b" {
  role  = "proxy"
  types = ["rds", "dynamodb"]
}`, `(?s)types.*unknown type "dynamodb"`},
		{"trust sid", `resource "rdsgate_role_trust" "t" {
  role_name         = "app"
  sid               = "not-alnum"
  trusted_role_arns = ["arn:aws:iam::123456789012:role/proxy"]
}`, `(?s)sid.*letters and digits`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: factories,
				Steps: []resource.TestStep{{
					Config:      e.providerHCL() + c.hcl,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}

func TestAccDataSources(t *testing.T) {
	e := newEnv(t)
	e.instance(t, "orders", "postgres", true)
	e.instance(t, "legacy", "mysql", false)
	cfg := e.providerHCL() + `
data "rdsgate_databases" "all" {
  types    = ["rds"]
  db_users = ["app"]
}

data "rdsgate_shard_plan" "p" {
  base_role = "rdsgate-proxy"
  databases = data.rdsgate_databases.all.databases
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{{
			Config: cfg,
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr("data.rdsgate_databases.all", "databases.#", "1"),
				resource.TestCheckResourceAttr("data.rdsgate_databases.all", "databases.0.name", "orders"),
				resource.TestCheckResourceAttr("data.rdsgate_databases.all", "databases.0.labels.engine", "postgres"),
				resource.TestCheckResourceAttr("data.rdsgate_databases.all", "skipped.#", "1"),
				resource.TestCheckResourceAttrWith("data.rdsgate_databases.all", "skipped.0.reason", contains("rdsgate enable-iam-auth --region us-east-1 --instance legacy")),
				resource.TestCheckResourceAttrWith("data.rdsgate_databases.all", "inventory_json", contains(`"resource_id": "db-`)),
				resource.TestCheckResourceAttr("data.rdsgate_shard_plan.p", "stats.databases", "1"),
				resource.TestCheckResourceAttr("data.rdsgate_shard_plan.p", "shard_role_arns.#", "0"),
				resource.TestCheckResourceAttrWith("data.rdsgate_shard_plan.p", "plan_json", func(v string) error {
					p, err := policies.ReadPlan([]byte(v), "plan_json")
					if err != nil {
						return err
					}
					return p.Check()
				}),
				resource.TestCheckResourceAttrWith("data.rdsgate_shard_plan.p", "table", contains("rdsgate-proxy", "1 database in 1 document")),
			),
		}},
	})
}

// The gateway's RBAC as Terraform: rules in rdsgate_proxy_config become
// the RBAC file (written by cloud-init next to the configuration), checked
// at plan time with the proxy's own validation.
func TestAccProxyConfigRBAC(t *testing.T) {
	e := newEnv(t)
	base := e.providerHCL() + `
locals {
  dbs = [{ name = "orders", engine = "postgres", kind = "instance", region = "us-east-1", endpoint = "orders.abc.us-east-1.rds.amazonaws.com", port = 5432, db_users = ["app"], labels = { env = "prod" } }]
}
`
	good := base + `
data "rdsgate_proxy_config" "gw" {
  databases = local.dbs
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
  audit_log = "/var/log/rdsgate/audit.jsonl"
  gateway = {
    listen_postgres = "0.0.0.0:5432"
    listen_api      = "0.0.0.0:8443"
    tls_cert        = "/etc/rdsgate/gateway.pem"
    tls_key         = "/etc/rdsgate/gateway-key.pem"
    iam_audience    = "prod-gateway"
  }
  rbac_rules = [
    { name = "engineers", identities = ["arn:aws:iam::123456789012:role/engineers"], labels = { env = "prod" }, db_users = ["app"], db_names = ["orders"] },
    { name = "no-contractors", effect = "deny", identities = ["arn:aws:iam::*:role/contractors"], databases = ["*"] },
  ]
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config: base + `
data "rdsgate_proxy_config" "gw" {
  databases = local.dbs
  ca_bundle = "/etc/rdsgate/global-bundle.pem"
  gateway   = { listen_postgres = "0.0.0.0:5432", tls_cert = "/c.pem", tls_key = "/k.pem", iam_audience = "gw" }
  rbac_rules = [
    { name = "ok", identities = ["CN=alice"], databases = ["orders"], db_users = ["app"], db_names = ["orders"] },
    { name = "half", identities = ["CN=bob"], databases = ["orders"] },
  ]
}
`,
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`rbac_rules\[1\] \(half\): an allow rule needs\s+db_users and db_names`),
			},
			{
				Config: base + `
data "rdsgate_proxy_config" "gw" {
  databases  = local.dbs
  ca_bundle  = "/etc/rdsgate/global-bundle.pem"
  rbac_rules = [{ name = "ok", identities = ["CN=alice"], databases = ["orders"], db_users = ["app"], db_names = ["orders"] }]
}
`,
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`rbac_rules decide what gateway clients may reach; set gateway`),
			},
			{
				Config: good,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.gw", "rbac_json", contains(`"name": "engineers"`, `"effect": "deny"`)),
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.gw", "config_json", contains(`"audience": "prod-gateway"`, `"rbac_file": "/etc/rdsgate/rbac.json"`,
						`"listen_api": "0.0.0.0:8443"`, `"audit_log": "/var/log/rdsgate/audit.jsonl"`)),
					resource.TestCheckResourceAttrWith("data.rdsgate_proxy_config.gw", "cloud_init", contains("path: /etc/rdsgate/rbac.json", `"name": "no-contractors"`)),
				),
			},
		},
	})
}

// The provider can act through a deployment role, and a malformed one is
// refused naming the attribute.
func TestAccProviderAssumeRole(t *testing.T) {
	e := newEnv(t)
	if _, err := e.c.IAM.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String("deployer"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	// moto lets anyone assume anything, so that apply succeeds proves
	// little: IAM is reached through a proxy that records which key signed
	// each request, and STS through one that records whose keys it issued.
	stsRec := testenv.StartSTSRecorder(t, e.url, func(string, string, string) {})
	iamRec := testenv.StartFaultProxy(t, e.url)
	withRole := func(arn string) string {
		return fmt.Sprintf(`
provider "rdsgate" {
  region = "us-east-1"
  endpoints {
    iam = %q
    sts = %q
    rds = %q
  }
  assume_role {
    role_arn     = %q
    session_name = "acceptance"
  }
}

resource "rdsgate_access_role" "r" {
  name             = "made-as-deployer"
  trusted_services = ["ec2.amazonaws.com"]
}
`, iamRec.URL, stsRec.URL, e.url, arn)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: withRole("deployer"), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)Not a role ARN.*role_arn\s+= "deployer".*give the role to assume as\s+arn:aws:iam::123456789012:role/NAME`)},
			{Config: withRole("arn:aws:iam::123456789012:role/deployer"),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("rdsgate_access_role.r", "arn", "arn:aws:iam::123456789012:role/made-as-deployer"),
					func(*terraform.State) error {
						creates := iamRec.Requests("CreateRole")
						if len(creates) == 0 {
							return fmt.Errorf("no CreateRole went through the recording proxy")
						}
						for _, r := range creates {
							if got := stsRec.Role(r.KeyID); got != "arn:aws:sts::123456789012:assumed-role/deployer/acceptance" {
								return fmt.Errorf("CreateRole was signed with key %q (issued for %q), not with the assumed deployer session's", r.KeyID, got)
							}
						}
						return nil
					})},
		},
	})
}
