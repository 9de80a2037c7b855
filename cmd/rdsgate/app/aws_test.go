package app

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/rds"
	rdstypes "github.com/aws/aws-sdk-go-v2/service/rds/types"

	"github.com/rdsgate/rdsgate/bootstrap"
	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
)

// awsEnv points the SDK's own credential chain and endpoint resolution at a
// fresh moto server, the way a user points rdsgate at an emulator.
func awsEnv(t *testing.T) *bootstrap.Clients {
	t.Helper()
	return awsEnvAt(t, testenv.StartMoto(t).URL)
}

// awsEnvAt points the SDK at an AWS emulator's URL (moto, or a proxy in
// front of it).
func awsEnvAt(t *testing.T, url string) *bootstrap.Clients {
	t.Helper()
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": testenv.AccessKeyID, "AWS_SECRET_ACCESS_KEY": testenv.SecretAccessKey,
		"AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
		"AWS_CONFIG_FILE": filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "RDSGATE_LEASE_SETTLE": "10ms",
	} {
		t.Setenv(k, v)
	}
	c, err := bootstrap.Connect(context.Background(), bootstrap.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createRole(t *testing.T, c *bootstrap.Clients, name string) {
	t.Helper()
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := c.IAM.CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
}

func TestShardsApply(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	dir := t.TempDir()
	applied := filepath.Join(dir, "applied.json")
	args := []string{"shards", "apply", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy"}

	r := run(t, "", args...)
	if r.code != 2 || !strings.Contains(r.stderr, "pass --yes to apply, or --dry-run") {
		t.Fatalf("without --yes off a terminal: exit %d %q", r.code, r.stderr)
	}
	r = run(t, "", append(args, "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "create_role") || !strings.Contains(r.stdout, "Dry run: nothing was written.") {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if roles, _ := c.IAM.ListRoles(context.Background(), &iam.ListRolesInput{PathPrefix: aws.String("/rdsgate/")}); len(roles.Roles) != 0 {
		t.Fatalf("dry run created %d roles", len(roles.Roles))
	}
	r = run(t, "", append(args, "--yes", "--output", applied)...)
	if r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"role rdsgate-proxy-shard-001  created", "Applied ", "API calls"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "grant   put_managed_policy role rdsgate-proxy / rdsgate-proxy-connect-01") {
		t.Errorf("progress lines missing from stderr:\n%s", r.stderr)
	}
	r = run(t, "", append(args, "--yes")...)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to write") {
		t.Fatalf("second apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The applied plan file applies as a no-op too.
	r = run(t, "", "shards", "apply", "--plan", applied, "--yes", "--format", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"steps": []`) {
		t.Fatalf("apply --plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestShardsApplyErrors(t *testing.T) {
	c := awsEnv(t)
	dir := t.TempDir()
	newer := filepath.Join(dir, "newer.json")
	if err := os.WriteFile(newer, []byte(`{"format_version":7}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"both inputs", []string{"--plan", newer, "--inventory", sampleInventory}, 2, "cannot specify --plan and --inventory"},
		{"neither", nil, 2, "--plan FILE"},
		{"newer plan", []string{"--plan", newer}, 2, "upgrade rdsgate"},
		{"unreadable plan", []string{"--plan", filepath.Join(dir, "none.json")}, 2, "no such file"},
		{"unknown profile", []string{"--inventory", sampleInventory, "--base-role", "p", "--profile", "nope"}, 1, `AWS profile "nope" is not defined`},
		{"malformed role ARN", []string{"--inventory", sampleInventory, "--base-role", "arn:aws:iam::12:role/p"}, 2, `"arn:aws:iam::12:role/p" is not an IAM role ARN`},
		{"missing base role", []string{"--inventory", sampleInventory, "--base-role", "absent", "--yes"}, 1, `the role "absent" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Calls.Reset()
			r := run(t, "", append([]string{"shards", "apply"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.want)
			}
		})
	}
	// None of it wrote anything.
	roles, err := c.IAM.ListRoles(context.Background(), &iam.ListRolesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(roles.Roles) != 0 {
		t.Fatalf("%d roles exist after failed runs", len(roles.Roles))
	}
}

func TestCreateIAM(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	args := []string{"bootstrap", "create-iam", "--role", "rdsgate-proxy", "--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/*"}
	r := run(t, "", append(args, "--dry-run")...)
	want := []string{
		`rdsgate bootstrap for role "rdsgate-proxy" in account 123456789012:`,
		"+ create    managed policy arn:aws:iam::123456789012:policy/rdsgate/rdsgate-proxy-boundary (permissions boundary)",
		"+ create    permissions boundary of role rdsgate-proxy",
		"+ create    inline policy rdsgate-bootstrap of role rdsgate-proxy",
		"Dry run: nothing was written.",
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("dry run output lacks %q:\n%s%s", w, r.stdout, r.stderr)
		}
	}
	if r = run(t, "", args...); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("without --yes: exit %d %q", r.code, r.stderr)
	}
	if r = run(t, "", append(args, "--yes")...); r.code != 0 || !strings.Contains(r.stdout, "Done: 3 changes made.") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "", append(args, "--yes")...); r.code != 0 || !strings.Contains(r.stdout, "Nothing to change.") {
		t.Fatalf("second run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", append(args, "--types", "rds,redshift", "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "~ update    inline policy rdsgate-bootstrap") || !strings.Contains(r.stdout, "+ Allow redshift:GetClusterCredentials on arn:aws:redshift:*:123456789012:dbuser:*/*") {
		t.Fatalf("widening: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out, err := c.IAM.GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String("rdsgate-proxy")})
	if err != nil || out.Role.PermissionsBoundary == nil {
		t.Fatalf("boundary not set: %v", err)
	}
}

// TestCreateIAMBoundaryCuts: the role already lets its agents write logs.
// create-iam warns that the boundary would take that away, names the
// actions and both fixes; with --keep-existing-permissions the boundary it
// writes keeps them (judged by test/iamcheck), and the warning is gone.
func TestCreateIAMBoundaryCuts(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "agent-proxy")
	agents := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:PutLogEvents","ssm:UpdateInstanceInformation"],"Resource":"*"}]}`
	if _, err := c.IAM.PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{RoleName: aws.String("agent-proxy"), PolicyName: aws.String("agents"),
		PolicyDocument: aws.String(agents)}); err != nil {
		t.Fatal(err)
	}
	args := []string{"bootstrap", "create-iam", "--role", "agent-proxy", "--dry-run"}
	r := run(t, "", args...)
	for _, want := range []string{"would cut what role agent-proxy's other policies allow: logs:PutLogEvents, ssm:UpdateInstanceInformation (inline agents)",
		"--keep-existing-permissions", "--manual"} {
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
	r = run(t, "", "bootstrap", "create-iam", "--role", "agent-proxy", "--keep-existing-permissions", "--yes")
	if r.code != 0 || strings.Contains(r.stderr, "warning") || !strings.Contains(r.stderr, "keeps what role agent-proxy's other policies allow") {
		t.Fatalf("keep: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	arn := aws.String("arn:aws:iam::123456789012:policy/rdsgate/agent-proxy-boundary")
	p, err := c.IAM.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.IAM.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: arn, VersionId: p.Policy.DefaultVersionId})
	if err != nil {
		t.Fatal(err)
	}
	boundary, err := url.QueryUnescape(aws.ToString(v.PolicyVersion.Document))
	if err != nil {
		t.Fatal(err)
	}
	if !iamcheck.Allows([]string{agents}, boundary, "logs:PutLogEvents", "arn:aws:logs:us-east-1:123456789012:log-group:x:*") {
		t.Fatalf("the boundary written cuts logs:PutLogEvents:\n%s", boundary)
	}
	if r = run(t, "", "bootstrap", "create-iam", "--role", "agent-proxy", "--keep-existing-permissions", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "Nothing to change.") {
		t.Fatalf("second run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestDiscoverEnableAndPlan(t *testing.T) {
	c := awsEnv(t)
	ctx := context.Background()
	api, err := c.RDS("us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range []struct {
		id  string
		iam bool
	}{{"orders", true}, {"billing", false}} {
		if _, err := api.CreateDBInstance(ctx, &rds.CreateDBInstanceInput{DBInstanceIdentifier: aws.String(db.id), Engine: aws.String("postgres"),
			DBInstanceClass: aws.String("db.t3.micro"), MasterUsername: aws.String("admin"), MasterUserPassword: aws.String("password-password"),
			AllocatedStorage: aws.Int32(20), EnableIAMDatabaseAuthentication: aws.Bool(db.iam),
			Tags: []rdstypes.Tag{{Key: aws.String("rdsgate:db-users"), Value: aws.String("app")}, {Key: aws.String("env"), Value: aws.String("prod")}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Tags separated by a comma are two tags, both of which must match.
	for tags, want := range map[string]bool{"env=prod,rdsgate:db-users=app": true, "env=prod,rdsgate:db-users=other": false} {
		r := run(t, "", "discover", "--tag", tags)
		if r.code != 0 || strings.Contains(r.stdout, `"orders"`) != want {
			t.Fatalf("discover --tag %s: exit %d, want orders listed: %v\n%s%s", tags, r.code, want, r.stdout, r.stderr)
		}
	}
	r := run(t, "", "discover", "--format", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "orders") || !strings.Contains(r.stdout, "billing (us-east-1): IAM database authentication is disabled; enable it with: rdsgate enable-iam-auth --region us-east-1 --instance billing") {
		t.Fatalf("discover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "", "enable-iam-auth", "--instance", "billing", "--apply-immediately"); r.code != 0 || !strings.Contains(r.stdout, "IAM database authentication enabled on instance billing.") {
		t.Fatalf("enable: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "", "enable-iam-auth", "--instance", "billing"); r.code != 0 || !strings.Contains(r.stdout, "already enabled") {
		t.Fatalf("enable again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	inv := filepath.Join(t.TempDir(), "inventory.json")
	if r = run(t, "", "discover", "--assume-role-arn", "arn:aws:iam::123456789012:role/auditor", "--external-id", "x", "--output", inv); r.code != 0 {
		t.Fatalf("discover as a role: exit %d\n%s", r.code, r.stderr)
	}
	data, _ := os.ReadFile(inv)
	parsed, err := policies.ParseInventory(data, inv)
	if err != nil || len(parsed.Databases) != 2 || parsed.Databases[0].DBUsers[0] != "app" {
		t.Fatalf("discovered inventory: %+v %v", parsed, err)
	}
	if r = run(t, "", "shards", "plan", "--inventory", inv, "--base-role", "proxy", "--format", "table"); r.code != 0 || !strings.Contains(r.stdout, "2 databases on 1 principal in 1 document") {
		t.Fatalf("planning the discovered inventory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	for _, args := range [][]string{{"discover"}, {"enable-iam-auth", "--instance", "orders"}} {
		if r = run(t, "", args...); r.code != 2 || !strings.Contains(r.stderr, "no AWS region: pass --region") {
			t.Errorf("%v without a region: exit %d %q", args, r.code, r.stderr)
		}
	}
}

func TestDBUserSQL(t *testing.T) {
	r := run(t, "", "db-user-sql", "--engine", "postgres", "--user", "app")
	if r.code != 0 || !strings.Contains(r.stdout, `CREATE USER "app";`) || !strings.Contains(r.stdout, `GRANT rds_iam TO "app";`) {
		t.Fatalf("postgres: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", "db-user-sql", "--engine", "aurora-mysql", "--user", "app,report_ro")
	if r.code != 0 || !strings.Contains(r.stdout, `CREATE USER 'report_ro'@'%' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS';`) || !strings.Contains(r.stdout, "REQUIRE SSL") {
		t.Fatalf("mysql: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"--engine", "oracle", "--user", "a"}, {"--engine", "mysql", "--user", "bad name"}, {"--user", "a"}} {
		if r := run(t, "", append([]string{"db-user-sql"}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d %s", args, r.code, r.stderr)
		}
	}
}

func TestDriftAndDoctor(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	if r := run(t, "", "bootstrap", "create-iam", "--role", "rdsgate-proxy", "--account-id", "123456789012", "--yes",
		"--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/*"); r.code != 0 {
		t.Fatalf("create-iam: %d %s", r.code, r.stderr)
	}
	applied := filepath.Join(t.TempDir(), "plan.json")
	if r := run(t, "", "shards", "apply", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--yes", "--output", applied); r.code != 0 {
		t.Fatalf("apply: %d %s", r.code, r.stderr)
	}
	// What create-iam wrote is rdsgate's, named as such, not "not managed".
	r := run(t, "", "drift", "--plan", applied)
	if r.code != 0 || !strings.Contains(r.stdout, "No drift: IAM holds the plan") || strings.Contains(r.stdout, "Not managed") ||
		!strings.Contains(r.stdout, "\nWritten by rdsgate bootstrap create-iam, not part of the plan (its --dry-run says whether they are current):\n"+
			"  role rdsgate-proxy inline policy rdsgate-bootstrap\n"+
			"  role rdsgate-proxy permissions boundary arn:aws:iam::123456789012:policy/rdsgate/rdsgate-proxy-boundary\n") {
		t.Fatalf("drift after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = run(t, "", "drift", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy"); r.code != 0 {
		t.Fatalf("drift --inventory after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A hand-made change to a shard policy.
	ctx := context.Background()
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"rds-db:connect","Resource":"*"}]}`
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy-shard-001"), PolicyName: aws.String("rdsgate-connect"), PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	r = run(t, "", "drift", "--plan", applied)
	if r.code != 2 || !strings.Contains(r.stdout, "role rdsgate-proxy-shard-001 policy rdsgate-connect: inline policy differs from the plan") ||
		!strings.Contains(r.stdout, "+ Allow rds-db:connect on *   (in AWS, not in the plan)") {
		t.Fatalf("drift: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", "drift", "--plan", applied, "--format", "github")
	if r.code != 2 || !strings.HasPrefix(r.stdout, "::error title=rdsgate drift::role rdsgate-proxy-shard-001 policy rdsgate-connect: inline policy differs from the plan%0A+ Allow rds-db:connect on *") {
		t.Fatalf("github format: exit %d\n%s", r.code, r.stdout)
	}
	r = run(t, "", "drift", "--plan", applied, "--format", "json")
	if r.code != 2 || !strings.Contains(r.stdout, `"drifted": true`) {
		t.Fatalf("json format: exit %d\n%s", r.code, r.stdout)
	}
	for _, args := range [][]string{{"drift", "--plan", "/nonexistent.json"}, {"drift", "--plan", applied, "--bogus"}, {"drift"}} {
		if r = run(t, "", args...); r.code != 1 {
			t.Errorf("%v: exit %d, want 1 (an error is not drift): %s", args, r.code, r.stderr)
		}
	}
	if r = run(t, "", "shards", "apply", "--plan", applied, "--yes"); r.code != 0 {
		t.Fatalf("repair: %d %s", r.code, r.stderr)
	}
	if r = run(t, "", "drift", "--plan", applied); r.code != 0 {
		t.Fatalf("drift after repair: exit %d\n%s", r.code, r.stdout)
	}

	r = run(t, "", "doctor", "--plan", applied)
	if r.code != 0 || !strings.Contains(r.stdout, "[ ok ] trust rdsgate-proxy-shard-001") || !strings.Contains(r.stdout, "All ") {
		t.Fatalf("doctor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// With no arguments, doctor says what it did not check and how to;
	// it takes plan.json from the working directory, as the README writes it.
	t.Chdir(t.TempDir())
	r = run(t, "", "doctor")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "\nAll 2 checks passed.\nNot checked: roles, databases (see [skip] above for what to give).\n") ||
		!strings.Contains(r.stdout, "[skip] roles        not checked: no plan") ||
		!strings.Contains(r.stdout, "fix: give --inventory FILE (what rdsgate discover --output wrote), or run doctor where inventory.json is") {
		t.Fatalf("doctor with no arguments: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(applied)
	if err := os.WriteFile("plan.json", data, 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, "", "doctor")
	if r.code != 0 || r.stderr != "doctor: using the plan plan.json in the working directory (--plan FILE names another)\n" ||
		!strings.Contains(r.stdout, "[ ok ] trust rdsgate-proxy-shard-001") || !strings.HasSuffix(r.stdout, "Not checked: databases (see [skip] above for what to give).\n") {
		t.Fatalf("doctor with plan.json here: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := c.IAM.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("rdsgate-proxy-shard-001"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	r = run(t, "", "doctor", "--plan", applied)
	if r.code != 1 || !strings.Contains(r.stdout, "[FAIL] trust rdsgate-proxy-shard-001") || !strings.Contains(r.stdout, `"Principal":{"AWS":"arn:aws:iam::123456789012:role/rdsgate-proxy"}`) {
		t.Fatalf("doctor with broken trust: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestConfirmAtATerminal runs create-iam under a pseudo-terminal (util-linux
// script), where it must ask before writing and honour the answer.
func TestConfirmAtATerminal(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	bin := testenv.BuildRdsgate(t)
	ask := func(answer string) (string, int) {
		cmd := exec.Command("script", "-qec", bin+" bootstrap create-iam --role rdsgate-proxy --manual", "/dev/null")
		cmd.Stdin = strings.NewReader(answer + "\n")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := ask("n")
	if code != 1 || !strings.Contains(out, "Make 1 change in account 123456789012? [y/N]") || !strings.Contains(out, "cancelled: nothing was changed") {
		t.Fatalf("answering n: exit %d\n%s", code, out)
	}
	if _, err := c.IAM.GetRolePolicy(context.Background(), &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String("rdsgate-bootstrap")}); err == nil {
		t.Fatal("answering n still wrote the policy")
	}
	if out, code = ask("y"); code != 0 || !strings.Contains(out, "Done: 1 change made.") {
		t.Fatalf("answering y: exit %d\n%s", code, out)
	}
}

// A second apply while another holds the lease exits 75 and names the
// holder; nothing is written.
func TestShardsApplyWhileAnotherHoldsTheLease(t *testing.T) {
	c := awsEnv(t)
	createRole(t, c, "rdsgate-proxy")
	until := time.Now().Add(time.Hour).Unix()
	if _, err := c.IAM.TagRole(context.Background(), &iam.TagRoleInput{RoleName: aws.String("rdsgate-proxy"),
		Tags: []iamtypes.Tag{{Key: aws.String(bootstrap.TagLease), Value: aws.String(fmt.Sprintf("pipeline-42 %d", until))}}}); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "shards", "apply", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--yes", "--lease-wait", "0s")
	if r.code != ExitBusy || !strings.Contains(r.stderr, "pipeline-42 holds the lease until") || !strings.Contains(r.stderr, "--lease-wait") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if roles, _ := c.IAM.ListRoles(context.Background(), &iam.ListRolesInput{PathPrefix: aws.String("/rdsgate/")}); len(roles.Roles) != 0 {
		t.Fatalf("the refused apply created %d roles", len(roles.Roles))
	}
}

// The tour's writing commands against moto behind a layer that behaves like
// real IAM's eventual consistency: new policies and roles missing for a
// while, trust policies naming them refused. Both succeed, and say they wait.
func TestWritesThroughIAMLag(t *testing.T) {
	m := testenv.StartMoto(t)
	fp := testenv.StartFaultProxy(t, m.URL)
	c := awsEnvAt(t, fp.URL)
	createRole(t, c, "rdsgate-proxy")
	refused := fp.Lag(1500 * time.Millisecond)
	r := run(t, "", "bootstrap", "create-iam", "--role", "rdsgate-proxy", "--types", "rds", "--yes",
		"--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/*")
	if r.code != 0 {
		t.Fatalf("create-iam: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", "shards", "apply", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--reserved-inline", "1600", "--yes")
	if r.code != 0 {
		t.Fatalf("shards apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if refused() < 3 {
		t.Fatalf("the lag layer refused only %d requests", refused())
	}
	if !strings.Contains(r.stderr, "eventually consistent") {
		t.Errorf("shards apply waited without saying so:\n%s", r.stderr)
	}
	if r := run(t, "", "drift", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--reserved-inline", "1600"); r.code != 0 {
		t.Fatalf("drift after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// An apply that fails halfway says how far it got and names the command
// that was run, so that running it again finishes the job.
func TestShardsApplyFailureNamesTheCommandToRunAgain(t *testing.T) {
	m := testenv.StartMoto(t)
	fp := testenv.StartFaultProxy(t, m.URL)
	c := awsEnvAt(t, fp.URL)
	createRole(t, c, "rdsgate-proxy")
	planFile := filepath.Join(t.TempDir(), "my plan.json")
	if r := run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--output", planFile); r.code != 0 {
		t.Fatalf("plan: %d %s", r.code, r.stderr)
	}
	fp.Decide(func(op string, n int) *testenv.Fault {
		if op == "CreatePolicy" && n >= 3 {
			return testenv.Denied
		}
		return nil
	})
	r := run(t, "", "shards", "apply", "--plan", planFile, "--yes")
	fp.Decide(nil)
	want := fmt.Sprintf("To finish, run the same command again: rdsgate shards apply --plan '%s' --yes", planFile)
	if r.code != ExitFailure || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "steps were done") {
		t.Fatalf("exit %d, want the hint %q:\n%s", r.code, want, r.stderr)
	}
	if r := run(t, "", "shards", "apply", "--plan", planFile, "--yes"); r.code != 0 {
		t.Fatalf("running it again: exit %d\n%s", r.code, r.stderr)
	}
}
