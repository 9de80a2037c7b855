package terratest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	"github.com/gruntwork-io/terratest/modules/terraform"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/proxyd"
)

// world is a moto server, SDK clients on it, and a copy of examples/ and
// modules/ to run terraform in (init writes into the folder it runs in).
type world struct {
	url     string
	c       *bootstrap.Clients
	tf      *testenv.Terraform
	root    string
	refused func() int // requests the lag layer refused, when there is one
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldLag(t, 0)
}

// newWorldLag is a world whose terraform talks to moto through a layer that
// behaves like real IAM's eventual consistency for lag after each creation
// (no layer when lag is 0); the test's own checks talk to moto directly.
func newWorldLag(t *testing.T, lag time.Duration) *world {
	t.Helper()
	m := testenv.StartMoto(t)
	c, err := bootstrap.Connect(context.Background(), bootstrap.Config{Region: "us-east-1", EndpointURL: m.URL, MaxBackoff: 50 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.AccessKeyID, testenv.SecretAccessKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"examples", "modules"} {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(filepath.Join(testenv.RepoRoot(), d))); err != nil {
			t.Fatal(err)
		}
	}
	w := &world{url: m.URL, c: c, tf: testenv.StartTerraform(t), root: root}
	if lag > 0 {
		fp := testenv.StartFaultProxy(t, m.URL)
		w.refused = fp.Lag(lag)
		w.url = fp.URL
	}
	return w
}

// options runs terraform in dir with the emulator as AWS.
func (w *world) options(dir string, vars map[string]any) *terraform.Options {
	env := map[string]string{
		"AWS_ENDPOINT_URL": w.url, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": testenv.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": testenv.SecretAccessKey, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "RDSGATE_LEASE_SETTLE": "10ms",
	}
	for k, v := range w.tf.Env {
		env[k] = v
	}
	// Variables go in a file: a thousand databases do not fit on a command line.
	f, err := os.CreateTemp(w.root, "vars-*.tfvars.json")
	if err != nil {
		panic(err)
	}
	f.Close()
	opts := &terraform.Options{TerraformDir: filepath.Join(w.root, dir), VarFiles: []string{f.Name()}, EnvVars: env, NoColor: true}
	setVars(opts, vars)
	return opts
}

// setVars (re)writes the variables of a run.
func setVars(opts *terraform.Options, vars map[string]any) {
	data, err := json.Marshal(vars)
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(opts.VarFiles[0], data, 0o644); err != nil {
		panic(err)
	}
}

// instances creates RDS instances in the emulator, IAM auth off.
func (w *world) instances(t *testing.T, names ...string) {
	t.Helper()
	api, err := w.c.RDS("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := api.CreateDBInstance(context.Background(), &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(n), Engine: aws.String("postgres"),
				DBInstanceClass: aws.String("db.t3.micro"), MasterUsername: aws.String("admin"), MasterUserPassword: aws.String("password-password"),
				AllocatedStorage: aws.Int32(20)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func databasesVar(names ...string) map[string]any {
	m := map[string]any{}
	for _, n := range names {
		m[n] = map[string]any{"identifier": n, "db_users": []string{"app", "readonly"}, "labels": map[string]string{"env": "test"}}
	}
	return m
}

// reachable checks with rdsgate's policy evaluator that the proxy role
// reaches every database IAM auth is on for, and returns how many.
func (w *world) reachable(t *testing.T, base string, names []string) {
	t.Helper()
	ctx := context.Background()
	api, _ := w.c.RDS("us-east-1")
	plan := &policies.Plan{Base: policies.PrincipalRef{Kind: policies.PrincipalRole, Name: base, ARN: policies.RoleARN("aws", testenv.AccountID, "/", base)},
		AccountID: testenv.AccountID, Partition: "aws", Settings: policies.PlanSettings{ShardRolePath: policies.ShardRolePath(base)}}
	obs, err := bootstrap.ReadState(ctx, w.c.IAM, plan)
	if err != nil {
		t.Fatal(err)
	}
	state := obs.Plan.State()
	for _, n := range names {
		db, err := bootstrap.DescribeDatabase(ctx, api, policies.KindInstance, n)
		if err != nil || db == nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !db.IAMAuthEnabled {
			t.Fatalf("IAM auth is off on %s", n)
		}
		arn := policies.DBUserARN{Partition: "aws", Region: "us-east-1", AccountID: testenv.AccountID, ResourceID: db.ResourceID, DBUser: "app"}.String()
		if len(state.ConnectVia(plan.Base.ARN, arn, 1, nil)) == 0 {
			t.Fatalf("%s (%s) is not reachable from %s by IAM's rules", n, arn, base)
		}
	}
}

func TestDatabaseAccessModule(t *testing.T) {
	w := newWorld(t)
	names := []string{"orders", "billing", "search"}
	w.instances(t, names...)
	vars := map[string]any{
		"name": "rdsgate-proxy", "databases": databasesVar(names...), "max_managed": 3, "tags": map[string]string{"team": "data"},
	}
	opts := w.options("modules/database-access", vars)
	defer w.destroyed(t, opts, "rdsgate-proxy")
	terraform.InitAndApply(t, opts)
	w.reachable(t, "rdsgate-proxy", names)

	role, err := bootstrap.ReadRole(context.Background(), w.c.IAM, "rdsgate-proxy")
	if err != nil || role == nil || !role.Managed || role.Tags["team"] != "data" || role.PermissionsBoundary == "" {
		t.Fatalf("proxy role: %+v %v", role, err)
	}
	var stats map[string]int
	terraform.OutputStruct(t, opts, "stats", &stats)
	if stats["databases"] != 3 {
		t.Fatalf("stats: %v", stats)
	}
	if code := terraform.PlanExitCode(t, opts); code != 0 {
		t.Fatalf("the plan after apply is not empty: exit %d", code)
	}

	// A change made by hand to a shard policy: plan -detailed-exitcode
	// exits 2, which is the CI drift check; apply puts it back.
	w.widen(t, "rdsgate-proxy")
	if code := terraform.PlanExitCode(t, opts); code != 2 {
		t.Fatalf("a widened shard policy gave plan exit %d, want 2", code)
	}
	terraform.Apply(t, opts)
	if code := terraform.PlanExitCode(t, opts); code != 0 {
		t.Fatalf("after repair the plan exits %d", code)
	}

	// One more database: incremental, nothing moves.
	w.instances(t, "reports")
	vars["databases"] = databasesVar(append(names, "reports")...)
	setVars(opts, vars)
	terraform.Apply(t, opts)
	terraform.OutputStruct(t, opts, "stats", &stats)
	if stats["databases"] != 4 || stats["moved"] != 0 {
		t.Fatalf("after adding one: %v", stats)
	}
	w.reachable(t, "rdsgate-proxy", append(names, "reports"))
}

// The module applied against IAM that lags as real IAM does: the proxy role
// is created and at once written to, its boundary policy attached as soon as
// it exists, shard roles trust the new role. Terraform apply must succeed
// and the next plan be empty.
func TestDatabaseAccessModuleThroughIAMLag(t *testing.T) {
	w := newWorldLag(t, 2*time.Second)
	names := []string{"orders", "billing"}
	w.instances(t, names...)
	vars := map[string]any{"name": "rdsgate-proxy", "databases": databasesVar(names...), "max_managed": 1, "max_shard_roles": 3,
		"inventory": syntheticInventory(300)}
	opts := w.options("modules/database-access", vars)
	defer w.destroyed(t, opts, "rdsgate-proxy")
	terraform.InitAndApply(t, opts)
	w.reachable(t, "rdsgate-proxy", names)
	if code := terraform.PlanExitCode(t, opts); code != 0 {
		t.Fatalf("the plan after apply is not empty: exit %d", code)
	}
	if n := w.refused(); n < 3 {
		t.Fatalf("the lag layer refused only %d requests; the test proves little", n)
	}
	t.Logf("applied through %d refusals of IAM's lag", w.refused())
}

// widen adds a statement to the proxy role's connect policy by hand.
func (w *world) widen(t *testing.T, role string) {
	t.Helper()
	ctx := context.Background()
	out, err := w.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policies.InlinePolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := url.PathUnescape(aws.ToString(out.PolicyDocument))
	doc, err := policies.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	doc.Statements = append(doc.Statements, policies.Statement{Effect: policies.Allow, Action: policies.One("rds-db:connect"), Resource: policies.One("*")})
	if _, err := w.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policies.InlinePolicyName),
		PolicyDocument: aws.String(string(doc.JSON()))}); err != nil {
		t.Fatal(err)
	}
}

// destroyed runs terraform destroy and checks that nothing rdsgate made is left.
func (w *world) destroyed(t *testing.T, opts *terraform.Options, role string) {
	terraform.Destroy(t, opts)
	ctx := context.Background()
	if r, err := bootstrap.ReadRole(ctx, w.c.IAM, role); err != nil || r != nil {
		t.Errorf("after destroy the proxy role is still there (%v)", err)
	}
	pols, err := w.c.IAM.ListPolicies(ctx, &iam.ListPoliciesInput{PathPrefix: aws.String("/rdsgate/")})
	if err != nil || len(pols.Policies) > 0 {
		t.Errorf("after destroy %d rdsgate policies are left (%v)", len(pols.Policies), err)
	}
	roles, err := w.c.IAM.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String("/rdsgate/")})
	if err != nil || len(roles.Roles) > 0 {
		t.Errorf("after destroy %d shard roles are left (%v)", len(roles.Roles), err)
	}
}

func TestProxyModule(t *testing.T) {
	w := newWorld(t)
	dbs := []map[string]any{
		{"name": "orders", "engine": "postgres", "kind": "instance", "region": "us-east-1", "endpoint": "orders.abc.us-east-1.rds.amazonaws.com", "port": 5432, "db_users": []string{"app"}},
		{"name": "billing", "engine": "mysql", "kind": "instance", "region": "us-east-1", "endpoint": "billing.abc.us-east-1.rds.amazonaws.com", "port": 3306, "db_users": []string{"*"}},
	}
	opts := w.options("modules/proxy", map[string]any{
		"databases":      dbs,
		"database_roles": map[string]string{"orders": "arn:aws:iam::123456789012:role/rdsgate/p/p-shard-001", "billing": "arn:aws:iam::123456789012:role/p"},
		"proxy_role_arn": "arn:aws:iam::123456789012:role/p", "external_id": "ext-1", "first_port": 16000,
	})
	defer terraform.Destroy(t, opts)
	terraform.InitAndApply(t, opts)
	raw := terraform.Output(t, opts, "config_json")
	cfg, err := proxyd.ParseConfig([]byte(raw), "config_json")
	if err != nil {
		t.Fatalf("the proxy refuses the module's configuration: %v\n%s", err, raw)
	}
	orders, billing := cfg.Database("orders"), cfg.Database("billing")
	if orders == nil || billing == nil || orders.AssumeRoleARN != "arn:aws:iam::123456789012:role/rdsgate/p/p-shard-001" || orders.ExternalID != "ext-1" ||
		billing.AssumeRoleARN != "" || billing.Protocol != "mysql" || billing.Listen != "127.0.0.1:16000" || orders.Listen != "127.0.0.1:16001" {
		t.Fatalf("config: %+v %+v", orders, billing)
	}
	// A database that sorts first joins: no listener moves (name order would
	// have given it billing's port, and billing orders' MySQL-less one).
	grown := w.options("modules/proxy", map[string]any{
		"databases": append([]map[string]any{{"name": "analytics", "engine": "postgres", "kind": "instance", "region": "us-east-1",
			"endpoint": "analytics.abc.us-east-1.rds.amazonaws.com", "port": 5432, "db_users": []string{"app"}}}, dbs...),
		"database_roles": map[string]string{"orders": "arn:aws:iam::123456789012:role/rdsgate/p/p-shard-001", "billing": "arn:aws:iam::123456789012:role/p"},
		"proxy_role_arn": "arn:aws:iam::123456789012:role/p", "external_id": "ext-1", "first_port": 16000,
	})
	grown.TerraformDir = opts.TerraformDir
	terraform.Apply(t, grown)
	if after, err := proxyd.ParseConfig([]byte(terraform.Output(t, grown, "config_json")), "config_json"); err != nil ||
		after.Database("billing").Listen != billing.Listen || after.Database("orders").Listen != orders.Listen || after.Database("analytics").Listen != "127.0.0.1:16002" {
		t.Fatalf("after adding analytics: %v %+v", err, after)
	}
	if unit := terraform.Output(t, opts, "systemd_unit"); !strings.Contains(unit, "proxy start --config /etc/rdsgate/proxy.json") {
		t.Fatalf("unit:\n%s", unit)
	}
	if ci := terraform.Output(t, opts, "cloud_init"); !strings.HasPrefix(ci, "#cloud-config") || !strings.Contains(ci, "rdsgate-proxy.service") {
		t.Fatalf("cloud-init:\n%s", ci)
	}
	// A bad variable fails at plan with the variable's message.
	bad := w.options("modules/proxy", map[string]any{"databases": dbs, "ca_bundle": "relative.pem"})
	if _, err := terraform.PlanE(t, bad); err == nil || !strings.Contains(err.Error(), "ca_bundle must be an absolute path") {
		t.Fatalf("a relative ca_bundle: %v", err)
	}
}

func TestCompleteExample(t *testing.T) {
	w := newWorld(t)
	w.instances(t, "orders")
	opts := w.options("examples/complete", map[string]any{"aws_endpoint": w.url})
	defer w.destroyed(t, opts, "rdsgate-proxy")
	terraform.InitAndApply(t, opts)
	w.reachable(t, "rdsgate-proxy", []string{"orders"})
	cfg, err := proxyd.ParseConfig([]byte(terraform.Output(t, opts, "proxy_config")), "proxy_config")
	if err != nil || cfg.Database("orders") == nil {
		t.Fatalf("%v %+v", err, cfg)
	}
	if code := terraform.PlanExitCode(t, opts); code != 0 {
		t.Fatalf("the plan after apply exits %d", code)
	}
}

// TestScale applies the database-access module for 1,000 databases and
// plans again; the plan must be empty. Both times are reported; nothing
// asserts them. 100 of the databases are rdsgate_database resources on
// emulated instances (IAM auth turned on, resource id read from RDS); moto
// gives every instance the same DbiResourceId, so the other 900 come in
// through the module's inventory variable with distinct resource ids, which
// is what makes the IAM side real: some 23 documents over 3 principals.
func TestScale(t *testing.T) {
	declared, listed := 100, 900
	if testing.Short() {
		declared, listed = 20, 180
	}
	w := newWorld(t)
	names := make([]string, declared)
	for i := range names {
		names[i] = fmt.Sprintf("db%04d", i)
	}
	w.instances(t, names...)
	inventory := syntheticInventory(listed)
	n := declared + listed
	opts := w.options("modules/database-access", map[string]any{"name": "rdsgate-proxy", "databases": databasesVar(names...), "inventory": inventory})
	opts.Parallelism = 20
	defer w.destroyed(t, opts, "rdsgate-proxy")
	terraform.Init(t, opts)
	start := time.Now()
	terraform.Apply(t, opts)
	applied := time.Since(start)
	start = time.Now()
	code := terraform.PlanExitCode(t, opts)
	planned := time.Since(start)
	var stats map[string]int
	terraform.OutputStruct(t, opts, "stats", &stats)
	report := fmt.Sprintf("scale: %d databases: apply %s, next plan %s (exit %d); %d documents (lower bound %d) on %d principals",
		n, applied.Round(100*time.Millisecond), planned.Round(100*time.Millisecond), code, stats["documents"], stats["lower_bound"], stats["principals"])
	t.Log(report)
	if out := os.Getenv("RDSGATE_SCALE_REPORT"); out != "" {
		_ = os.WriteFile(out, []byte(report+"\n"), 0o644)
	}
	if code != 0 {
		t.Fatalf("the plan after applying %d databases is not empty (exit %d)", n, code)
	}
	if stats["databases"] != n || stats["documents"] < n/100 || (!testing.Short() && stats["principals"] < 2) {
		t.Fatalf("stats: %v", stats)
	}
	w.reachable(t, "rdsgate-proxy", names[:20])
	w.reachableIDs(t, "rdsgate-proxy", inventory)
}

// reachableIDs checks inventory entries by their resource ids.
func (w *world) reachableIDs(t *testing.T, base string, inventory []map[string]any) {
	t.Helper()
	plan := &policies.Plan{Base: policies.PrincipalRef{Kind: policies.PrincipalRole, Name: base, ARN: policies.RoleARN("aws", testenv.AccountID, "/", base)},
		AccountID: testenv.AccountID, Partition: "aws", Settings: policies.PlanSettings{ShardRolePath: policies.ShardRolePath(base)}}
	obs, err := bootstrap.ReadState(context.Background(), w.c.IAM, plan)
	if err != nil {
		t.Fatal(err)
	}
	state := obs.Plan.State()
	for _, e := range inventory {
		arn := policies.DBUserARN{Partition: "aws", Region: "us-east-1", AccountID: testenv.AccountID, ResourceID: e["resource_id"].(string), DBUser: "readonly"}.String()
		if len(state.ConnectVia(plan.Base.ARN, arn, 1, nil)) == 0 {
			t.Fatalf("%s (%s) is not reachable from %s by IAM's rules", e["name"], arn, base)
		}
	}
}

// syntheticInventory is n inventory entries with distinct resource ids
// (moto gives every instance the same one).
func syntheticInventory(n int) []map[string]any {
	var inventory []map[string]any
	for i := range n {
		inventory = append(inventory, map[string]any{
			"name": fmt.Sprintf("fleet-%04d", i), "engine": "postgres", "kind": "instance", "resource_id": fmt.Sprintf("db-%026d", i),
			"region": "us-east-1", "account_id": testenv.AccountID, "endpoint": fmt.Sprintf("fleet-%04d.abc.us-east-1.rds.amazonaws.com", i),
			"port": 5432, "db_users": []string{"app", "readonly"},
		})
	}
	return inventory
}
