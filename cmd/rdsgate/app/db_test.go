package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// cliGateway is a gateway that takes IAM identities, in front of real
// PostgreSQL and MariaDB behind the RDS emulator and an STS that checks
// signatures, with the rdsgate binary set up to use it as alice.
type cliGateway struct {
	bin, dir string
	ca       *testenv.CA
	srv      *proxyd.Server
	logs     *testenv.LockedBuffer
	audit    string
	env      []string
}

// startCLIGateway starts it; stsEndpoint, when set, replaces the STS the
// gateway trusts (an unreachable one, a broken one).
func startCLIGateway(t *testing.T, stsEndpoint string) *cliGateway {
	t.Helper()
	g := &cliGateway{bin: testenv.BuildRdsgate(t), dir: t.TempDir(), logs: &testenv.LockedBuffer{}}
	dir := g.dir
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	my := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	keys := &rdsemu.Keys{}
	keys.Add("AKIDGATEWAY", "gateway-secret", "")
	pgEmu := rdsemu.Postgres(t, pg, rdsemu.Options{Keys: keys})
	myEmu := rdsemu.MySQL(t, my, "inner-pw", rdsemu.Options{Keys: keys})
	pg.SQL(t, "postgres", "CREATE USER app; GRANT rds_iam TO app")
	pg.SQL(t, "postgres", "CREATE DATABASE shop")
	my.SQL(t, "CREATE USER 'app'@'%' IDENTIFIED BY 'inner-pw'; CREATE DATABASE shop; GRANT ALL ON shop.* TO 'app'@'%'")
	callers := &rdsemu.Keys{}
	callers.Add("ASIAALICE", "alice-secret", "alice-session")
	callers.Add("ASIABOB", "bob-secret", "bob-session")
	if stsEndpoint == "" {
		stsEndpoint = rdsemu.StartSTS(t, callers, func(id string) string {
			switch id {
			case "ASIAALICE":
				return "arn:aws:sts::123456789012:assumed-role/dev/alice"
			case "ASIABOB": // no rule names bob's role
				return "arn:aws:sts::123456789012:assumed-role/visitor/bob"
			}
			return ""
		}, nil).URL
	}
	g.ca = testenv.NewCA(t, dir)
	cert, key := g.ca.Issue(t, "gateway", false, "localhost", "127.0.0.1")
	bundle := filepath.Join(dir, "bundle.pem")
	pgCA, _ := os.ReadFile(pg.CA.PEMFile)
	myCA, _ := os.ReadFile(my.CA.PEMFile)
	if err := os.WriteFile(bundle, append(pgCA, myCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	rbac := filepath.Join(dir, "rbac.json")
	if err := os.WriteFile(rbac, []byte(`{"rules":[
		{"name":"dev","identities":["arn:aws:iam::123456789012:role/dev"],"labels":{"env":"dev"},"db_users":["app"],"db_names":["postgres","shop"]},
		{"name":"no-prod","effect":"deny","identities":["*"],"labels":{"env":"prod"}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "gateway.json")
	g.audit = filepath.Join(dir, "audit.jsonl")
	// The databases as sidecar listeners first; proxy configure --gateway
	// then makes them a gateway's, as a person would.
	cfg := proxyd.Config{Region: "us-east-1", CABundle: bundle, AuditLog: g.audit, HealthAddress: "127.0.0.1:0",
		Databases: []proxyd.Database{
			{Name: "orders", Protocol: proxyd.ProtocolPostgres, Endpoint: pgEmu.Endpoint, Labels: map[string]string{"env": "dev"}, Listen: "127.0.0.1:0"},
			{Name: "shop", Protocol: proxyd.ProtocolMySQL, Endpoint: myEmu.Endpoint, Labels: map[string]string{"env": "dev"}, Listen: "127.0.0.1:0"},
			{Name: "ledger", Protocol: proxyd.ProtocolPostgres, Endpoint: pgEmu.Endpoint, Labels: map[string]string{"env": "prod"}, Listen: "127.0.0.1:0"},
		}}
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", "proxy", "configure", "--gateway", "--merge", "--output", conf, "--tls-cert", cert, "--tls-key", key, "--rbac-file", rbac,
		"--iam-audience", "cli-test", "--sts-endpoint", stsEndpoint,
		"--gateway-postgres", "127.0.0.1:0", "--gateway-mysql", "127.0.0.1:0", "--gateway-api", "127.0.0.1:0"); r.code != 0 ||
		!strings.Contains(r.stdout, "Gateway: PostgreSQL on 127.0.0.1:0, MySQL on 127.0.0.1:0, API on 127.0.0.1:0") {
		t.Fatalf("proxy configure --gateway: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	loaded, err := proxyd.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range loaded.Databases {
		if d.Listen != "" {
			t.Fatalf("%s kept its own listener %s beside the gateway: it would bypass the RBAC", d.Name, d.Listen)
		}
	}
	srv, err := proxyd.New(context.Background(), loaded, proxyd.WithLogger(slog.New(slog.NewJSONHandler(g.logs, nil))),
		proxyd.WithAWSConfig(aws.Config{Region: "us-east-1", Credentials: awscreds.NewStaticCredentialsProvider("AKIDGATEWAY", "gateway-secret", "")}))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	g.srv = srv
	_, apiPort, _ := strings.Cut(srv.APIAddr(), ":")
	g.env = []string{"AWS_ACCESS_KEY_ID=ASIAALICE", "AWS_SECRET_ACCESS_KEY=alice-secret", "AWS_SESSION_TOKEN=alice-session", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=" + os.DevNull, "AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"), "HOME=" + dir,
		"RDSGATE_GATEWAY=https://localhost:" + apiPort, "RDSGATE_GATEWAY_CA=" + g.ca.PEMFile}
	return g
}

// rdsgate runs the binary as alice; it returns stdout and stderr together.
func (g *cliGateway) rdsgate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return g.rdsgateWith(t, nil, args...)
}

// rdsgateWith runs the binary as alice with env added last (so it wins).
func (g *cliGateway) rdsgateWith(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Env = append(append(os.Environ(), g.env...), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return string(out), code
}

// TestDBCommands runs the users' commands against a gateway that takes IAM
// identities: db ls, db connect (psql through the tunnel, mysql over TLS),
// db env (used by psql as another client would), db logout, and access
// check, with the real binary and real clients.
func TestDBCommands(t *testing.T) {
	g := startCLIGateway(t, "")
	dir, ca, conf := g.dir, g.ca, filepath.Join(g.dir, "gateway.json")
	rdsgate := func(args ...string) (string, int) {
		t.Helper()
		return g.rdsgate(t, args...)
	}

	out, code := rdsgate("db", "ls")
	if code != 0 || !strings.Contains(out, "As arn:aws:sts::123456789012:assumed-role/dev/alice:") || !strings.Contains(out, "orders") || !strings.Contains(out, "shop") ||
		strings.Contains(out, "ledger") {
		t.Fatalf("db ls (%d):\n%s", code, out)
	}
	out, code = rdsgate("db", "connect", "orders", "--db-name", "postgres", "--", "-X", "-A", "-t", "-c", "select current_user")
	if code != 0 || strings.TrimSpace(out) != "app" {
		t.Fatalf("db connect orders (%d):\n%s", code, out)
	}
	out, code = rdsgate("db", "connect", "shop", "--db-name", "shop", "--", "-N", "-B", "-e", "SELECT CURRENT_USER(), DATABASE()")
	if code != 0 || strings.TrimSpace(out) != "app@%\tshop" {
		t.Fatalf("db connect shop (%d):\n%s", code, out)
	}
	if out, code = rdsgate("db", "connect", "ledger", "--db-name", "postgres"); code != 1 ||
		!strings.Contains(out, `arn:aws:sts::123456789012:assumed-role/dev/alice may not reach a database "ledger" through this gateway; you may reach: orders, shop`) {
		t.Fatalf("db connect ledger (%d):\n%s", code, out)
	}
	if out, code = rdsgate("db", "connect", "order", "--db-name", "postgres"); code != 1 || !strings.Contains(out, "you may reach: orders, shop; did you mean orders?") {
		t.Fatalf("db connect order (%d):\n%s", code, out)
	}
	bob := []string{"AWS_ACCESS_KEY_ID=ASIABOB", "AWS_SECRET_ACCESS_KEY=bob-secret", "AWS_SESSION_TOKEN=bob-session", "XDG_CACHE_HOME=" + filepath.Join(dir, "bob-cache")}
	if out, code = g.rdsgateWith(t, bob, "db", "connect", "orders"); code != 1 ||
		strings.TrimSpace(out) != `rdsgate: arn:aws:sts::123456789012:assumed-role/visitor/bob may not reach "orders", nor any other database, through this gateway: ask its administrator for a rule in its RBAC file that names you` {
		t.Fatalf("db connect as someone no rule names (%d):\n%s", code, out)
	}
	// psql's \c follows to another database name the rules allow on the
	// same server, and is refused, by the gateway, for one they do not.
	out, code = rdsgate("db", "connect", "orders", "--db-name", "postgres", "--", "-X", "-A", "-t", "-c", `\c shop`, "-c", "select current_database()")
	if code != 0 || !strings.Contains(out, `You are now connected to database "shop" as user "app"`) || !strings.HasSuffix(strings.TrimSpace(out), "\nshop") {
		t.Fatalf(`\c shop through db connect (%d):\n%s`, code, out)
	}
	out, code = rdsgate("db", "connect", "orders", "--db-name", "postgres", "--", "-X", "-A", "-t", "-c", `\c template1`, "-c", "select current_database()")
	if code == 0 || !strings.Contains(out, `database "template1"`) || strings.Contains(out, "You are now connected") {
		t.Fatalf(`\c template1 through db connect (%d):\n%s`, code, out)
	}
	// Flags after the database name are the command's flags, wherever
	// they are written; a mistyped one gets a suggestion.
	noCA := []string{"RDSGATE_GATEWAY_CA="}
	if out, code = g.rdsgateWith(t, noCA, "db", "connect", "orders", "--db-name", "postgres", "--", "-X", "-A", "-t", "-c", "select 1"); code == 0 {
		t.Fatalf("db connect without the gateway's CA connected (%d):\n%s", code, out)
	}
	out, code = g.rdsgateWith(t, noCA, "db", "connect", "orders", "--gateway-ca", g.ca.PEMFile, "--db-name", "postgres", "--", "-X", "-A", "-t", "-c", "select current_user")
	if code != 0 || strings.TrimSpace(out) != "app" {
		t.Fatalf("db connect orders --gateway-ca after the name (%d):\n%s", code, out)
	}
	if out, code = rdsgate("db", "connect", "orders", "--db-nam", "postgres"); code != 2 ||
		strings.TrimSpace(out) != "rdsgate: unknown flag --db-nam after the database name; did you mean --db-name? (client arguments go after --)" {
		t.Fatalf("db connect with a mistyped flag (%d):\n%s", code, out)
	}
	if out, code = rdsgate("db", "connect", "orders", "--db-user", "admin", "--db-name", "postgres"); code != 1 || !strings.Contains(out, `only with --db-user app, not "admin"`) {
		t.Fatalf("db connect as admin (%d):\n%s", code, out)
	}
	if out, code = rdsgate("db", "connect", "orders"); code != 2 || !strings.Contains(out, "choose with --db-name: you may use postgres, shop") {
		t.Fatalf("db connect without a db name (%d):\n%s", code, out)
	}

	// db env: the settings another client uses (here psql, straight to the gateway).
	out, code = rdsgate("db", "env", "orders", "--db-name", "postgres", "--format", "json")
	var settings struct{ Env map[string]string }
	if code != 0 || json.Unmarshal([]byte(out), &settings) != nil || !proxyd.IsIdentityToken(settings.Env["PGPASSWORD"]) || settings.Env["PGDATABASE"] != "orders/postgres" {
		t.Fatalf("db env (%d):\n%s", code, out)
	}
	psql := exec.Command("psql", "-X", "-A", "-t", "-c", "select current_user")
	psql.Env = os.Environ()
	for k, v := range settings.Env {
		psql.Env = append(psql.Env, k+"="+v)
	}
	psql.Env = append(psql.Env, "PGHOST=localhost", "PGSSLROOTCERT="+ca.PEMFile)
	if o, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(o)) != "app" {
		t.Fatalf("psql with db env's settings: %v %s", err, o)
	}
	// MySQL: the mysql client takes no user or database from the
	// environment, so db env writes an option file it reads.
	out, code = rdsgate("db", "env", "shop", "--db-name", "shop", "--format", "json")
	var mysqlSettings struct {
		Env     map[string]string
		Command []string
	}
	if code != 0 || json.Unmarshal([]byte(out), &mysqlSettings) != nil || len(mysqlSettings.Command) != 2 {
		t.Fatalf("db env for MySQL (%d):\n%s", code, out)
	}
	options := strings.TrimPrefix(mysqlSettings.Command[1], "--defaults-extra-file=")
	if st, err := os.Stat(options); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the option file %s: %v", options, err)
	}
	client, _ := mysqlClient()
	my := exec.Command(client, "--defaults-extra-file="+options, "-N", "-B", "-e", "SELECT CURRENT_USER(), DATABASE()")
	my.Env = append(os.Environ(), "HOME="+dir)
	if o, err := my.CombinedOutput(); err != nil || strings.TrimSpace(string(o)) != "app@%\tshop" {
		t.Fatalf("%s with db env's option file: %v %s", client, err, o)
	}
	cache, _ := filepath.Glob(filepath.Join(dir, "cache", "rdsgate", "gateways", "*.json"))
	if len(cache) != 1 {
		t.Fatalf("no cached token after db env: %v", cache)
	}
	if st, _ := os.Stat(cache[0]); st.Mode().Perm() != 0o600 {
		t.Fatalf("the token cache is mode %v", st.Mode())
	}
	if out, code = rdsgate("db", "logout"); code != 0 || out != "Forgot the identity token for "+strings.TrimPrefix(g.env[len(g.env)-2], "RDSGATE_GATEWAY=")+".\n" {
		t.Fatalf("db logout (%d): %q", code, out)
	}
	if cache, _ = filepath.Glob(filepath.Join(dir, "cache", "rdsgate", "gateways", "*.json")); len(cache) != 0 {
		t.Fatalf("db logout left %v", cache)
	}
	if out, code = g.rdsgateWith(t, []string{"RDSGATE_GATEWAY="}, "db", "logout"); code != 0 ||
		out != "Forgot the identity tokens of every gateway. Your AWS credentials are the SDK's: aws sso logout ends those.\n" {
		t.Fatalf("db logout of every gateway (%d): %q", code, out)
	}

	// access check explains decisions the way the gateway makes them.
	out, code = rdsgate("access", "check", "--config", conf, "--identity", "arn:aws:sts::123456789012:assumed-role/dev/alice", "--db", "orders", "--db-user", "app", "--db-name", "postgres")
	if code != 0 || !strings.Contains(out, `allowed: arn:aws:sts::123456789012:assumed-role/dev/alice on orders as "app", database "postgres": rule "dev" allows it`) {
		t.Fatalf("access check allowed (%d):\n%s", code, out)
	}
	out, code = rdsgate("access", "check", "--config", conf, "--identity", "arn:aws:iam::123456789012:role/dev", "--db", "ledger", "--db-user", "app", "--db-name", "postgres")
	if code != 1 || !strings.Contains(out, `denied:`) || !strings.Contains(out, `rule "no-prod" denies it`) {
		t.Fatalf("access check denied (%d):\n%s", code, out)
	}
	out, code = rdsgate("access", "check", "--config", conf, "--identity", "arn:aws:iam::123456789012:role/dev", "--db", "orders", "--db-user", "root", "--db-name", "postgres")
	if code != 1 || !strings.Contains(out, `rule "dev" allows orders only as db_users [app]`) {
		t.Fatalf("access check wrong user (%d):\n%s", code, out)
	}
}

// TestAccessCheckTable runs `rdsgate access check` on the table proxyd's
// TestRBACTable checks the gateway's decision on: the admin's tool and the
// gateway cannot disagree.
func TestAccessCheckTable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../../proxyd/testdata/rbac/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		RBAC      json.RawMessage   `json:"rbac"`
		Databases []json.RawMessage `json:"databases"`
		Cases     []struct {
			Identity, DB, User, Name, Rule, Why string
			Allowed                             bool
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &table); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rbac := filepath.Join(dir, "rbac.json")
	if err := os.WriteFile(rbac, table.RBAC, 0o644); err != nil {
		t.Fatal(err)
	}
	dbs, _ := json.Marshal(table.Databases)
	conf := filepath.Join(dir, "proxy.json")
	cfg := `{"ca_bundle": "ca.pem", "region": "us-east-1", "databases": ` + string(dbs) + `,
	  "gateway": {"listen_postgres": "127.0.0.1:0", "tls_cert": "c", "tls_key": "k", "client_ca": "ca", "rbac_file": "` + rbac + `"}}`
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range table.Cases {
		r := run(t, "", "access", "check", "--config", conf, "--identity", c.Identity, "--db", c.DB, "--db-user", c.User, "--db-name", c.Name)
		verdict, code := "denied:", 1
		if c.Allowed {
			verdict, code = "allowed:", 0
		}
		if r.code != code || !strings.HasPrefix(r.stdout, verdict) || (c.Rule != "" && !strings.Contains(r.stdout, `rule "`+c.Rule+`"`)) {
			t.Errorf("%s on %s as %s (%s): exit %d\n%s%s", c.Identity, c.DB, c.User, c.Why, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "the path /teams/ is ignored") || !strings.Contains(r.stderr, "MySQL database ledger") {
			t.Errorf("access check does not warn about what the rules cannot enforce:\n%s", r.stderr)
		}
	}
}
