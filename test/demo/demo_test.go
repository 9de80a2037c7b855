package demo

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/policies"
)

// TestDemoEndToEnd is `make demo` as a test: terraform apply of
// examples/complete against the emulated AWS, the proxy from the
// configuration apply produced, psql and mysql through it as an
// IAM-authenticated user; then a denied user, and a shard policy narrowed
// by hand, which the emulated RDS refuses on IAM's grounds, which
// `terraform plan -detailed-exitcode` reports as exit 2, and which apply
// repairs.
func TestDemoEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	env := Start(t, dir)
	f, p := appliedAndServed(t, dir, env)
	if out, err := p.MySQL(ctx, DBUser, "select total from billing.invoices where id = 1"); err != nil || out != "42.00" {
		t.Fatalf("mysql through the proxy: %v: %s", err, out)
	}

	// A user the configuration does not allow gets a clear error.
	out, err := p.PSQL(ctx, "intruder", "select 1")
	if err == nil || !strings.Contains(out, `database user "intruder" may not connect to orders`) || !strings.Contains(out, "allowed users: app") {
		t.Fatalf("intruder: %v: %s", err, out)
	}

	// The plan after apply is empty.
	if out, code, err := f.Terraform("plan", "-detailed-exitcode", "-input=false", "-no-color"); err != nil || code != 0 {
		t.Fatalf("plan after apply: exit %d %v\n%s", code, err, out)
	}

	// Narrow the connect policy by hand: RDS (the emulator, asking IAM)
	// refuses the next login, and terraform sees the drift.
	narrow(t, env)
	out, err = p.PSQL(ctx, DBUser, "select 1")
	if err == nil || !strings.Contains(out, `PAM authentication failed for user "app"`) {
		t.Fatalf("after the policy was narrowed, psql: %v: %s", err, out)
	}
	out, code, err := f.Terraform("plan", "-detailed-exitcode", "-input=false", "-no-color")
	if err != nil || code != 2 || !strings.Contains(out, "rdsgate_policy_shards.this") {
		t.Fatalf("plan after a hand edit: exit %d %v\n%s", code, err, out)
	}
	if out, code, err := f.Terraform("apply", "-auto-approve", "-input=false", "-no-color"); err != nil || code != 0 {
		t.Fatalf("apply: exit %d %v\n%s", code, err, out)
	}
	if out, err := p.PSQL(ctx, DBUser, "select item from orders where id = 1"); err != nil || out != "IAM-authenticated through rdsgate" {
		t.Fatalf("psql after the repair: %v: %s", err, out)
	}
}

// appliedAndServed applies the demo's configuration, starts the proxy it
// produced and checks that psql reaches PostgreSQL through it.
func appliedAndServed(t *testing.T, dir string, env *Env) (*Flow, *Proxy) {
	t.Helper()
	f := testFlow(t, dir, env)
	if out, err := f.Apply(); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	p, err := f.StartProxy(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if out, err := p.PSQL(context.Background(), DBUser, "select item from orders where id = 1"); err != nil || out != "IAM-authenticated through rdsgate" {
		t.Fatalf("psql through the proxy: %v: %s\nproxy log: %s", err, out, p.Log)
	}
	return f, p
}

// narrow rewrites the proxy role's connect policy to name another database.
func narrow(t *testing.T, env *Env) {
	t.Helper()
	ctx := context.Background()
	c := env.Clients()
	out, err := c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName)})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := url.PathUnescape(aws.ToString(out.PolicyDocument))
	doc, err := policies.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range doc.Statements {
		if len(st.Action.List) == 1 && st.Action.List[0] == "rds-db:connect" {
			doc.Statements[i].Resource = policies.List("arn:aws:rds-db:us-east-1:" + Account + ":dbuser:db-SOMEOTHERDATABASEXXXXXXXXXX/app")
		}
	}
	if _, err := c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("rdsgate-proxy"), PolicyName: aws.String(policies.InlinePolicyName),
		PolicyDocument: aws.String(string(doc.JSON()))}); err != nil {
		t.Fatal(err)
	}
}

// TestDemoThroughIAMLag is the demo's apply and queries with IAM lagging
// as real IAM does after each creation (make demo with
// RDSGATE_DEMO_IAM_LAG=2s does the same).
func TestDemoThroughIAMLag(t *testing.T) {
	dir := t.TempDir()
	env := StartWith(t, dir, Options{IAMLag: 2 * time.Second})
	f, _ := appliedAndServed(t, dir, env)
	if out, code, err := f.Terraform("plan", "-detailed-exitcode", "-input=false", "-no-color"); err != nil || code != 0 {
		t.Fatalf("plan after apply: exit %d %v\n%s", code, err, out)
	}
}

// freeRun finds n consecutive free ports, for the proxy's listeners (one
// per database from first_port): a test never takes the ports a running
// make demo uses.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		first := testenv.FreePort(t)
		ok := true
		for i := 1; i < n && ok; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first+i))
			if ok = err == nil; ok {
				ln.Close()
			}
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// testFlow builds rdsgate into dir and gives the flow free ports, so a
// test never answers for (or is answered by) a make demo that is up.
func testFlow(t *testing.T, dir string, env *Env) *Flow {
	t.Helper()
	return &Flow{Root: testenv.RepoRoot(), Dir: dir, Bin: testenv.BuildRdsgate(t), Env: env, TF: testenv.StartTerraform(t),
		FirstPort: freeRun(t, len(env.Databases)), HealthAddress: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
}
