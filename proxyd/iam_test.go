package proxyd

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

// iamEnv is a gateway that takes IAM identity tokens, in front of an STS
// that checks their signatures, with an audit file.
type iamEnv struct {
	*env
	serverCA *testenv.CA
	sts      *rdsemu.STS
	audit    string
	people   map[string]aws.Credentials // who -> credentials STS knows
}

const gatewayAudience = "test-gateway"

func newIAMEnv(t *testing.T) *iamEnv {
	t.Helper()
	g := &iamEnv{people: map[string]aws.Credentials{}}
	dir := t.TempDir()
	g.serverCA = testenv.NewCA(t, dir)
	serverCert, serverKey := g.serverCA.Issue(t, "gateway", false, "localhost", "*.localhost", "127.0.0.1")
	callers := &rdsemu.Keys{}
	arns := map[string]string{}
	for who, arn := range map[string]string{
		"alice":   "arn:aws:sts::123456789012:assumed-role/data-engineers/alice@example.com",
		"bob":     "arn:aws:iam::123456789012:user/bob",
		"mallory": "arn:aws:sts::123456789012:assumed-role/contractors/mallory",
	} {
		id, secret, session := "ASIA"+strings.ToUpper(who)+"KEY", who+"-secret", who+"-session"
		callers.Add(id, secret, session)
		arns[id] = arn
		g.people[who] = aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: session}
	}
	g.sts = rdsemu.StartSTS(t, callers, func(id string) string { return arns[id] }, nil)
	rbac := RBAC{Rules: []Rule{
		{Name: "engineers", Identities: []string{"arn:aws:iam::123456789012:role/data-engineers"}, Databases: []string{"pg", "my"}, DBUsers: []string{"app"}, DBNames: []string{"postgres", "shop"}},
		{Name: "contractors", Identities: []string{"arn:aws:iam::123456789012:role/contractors"}, Databases: []string{"*"}, DBUsers: []string{"*"}, DBNames: []string{"*"}},
		// Written with the role's path, which STS does not report: it must
		// still deny (it used to fail open).
		{Name: "no-contractors-on-pg", Effect: "deny", Identities: []string{"arn:aws:iam::*:role/teams/contractors"}, Databases: []string{"pg"}},
	}}
	rbacFile := filepath.Join(dir, "rbac.json")
	data, _ := json.Marshal(&rbac)
	if err := os.WriteFile(rbacFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g.audit = filepath.Join(dir, "audit.jsonl")
	g.env = newEnv(t, func(e *env, c *Config) {
		for i := range c.Databases {
			c.Databases[i].Listen = ""
		}
		c.AuditLog = g.audit
		c.Gateway = &Gateway{ListenPostgres: "127.0.0.1:0", ListenMySQL: "127.0.0.1:0", ListenAPI: "127.0.0.1:0", TLSCert: serverCert, TLSKey: serverKey,
			RBACFile: rbacFile, IAM: &IAMAuth{Audience: gatewayAudience, STSEndpoint: g.sts.URL}}
	})
	return g
}

// token makes who's identity token for a gateway audience, signed at a time.
func (g *iamEnv) token(t *testing.T, who, audience string, at time.Time) string {
	t.Helper()
	tok, err := IdentityToken(context.Background(), g.people[who], "us-east-1", g.sts.URL, audience, at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (g *iamEnv) psql(t *testing.T, token, user, dbname string) (string, error) {
	t.Helper()
	_, port := splitAddr(t, g.srv.Addr("gateway-postgres"))
	dsn := "host=localhost hostaddr=127.0.0.1 port=" + port + " user=" + user + " dbname=" + dbname + " sslmode=verify-full sslrootcert=" + g.serverCA.PEMFile
	t.Setenv("PGPASSWORD", token)
	return psql(t, dsn, "-c", "select current_user")
}

func (g *iamEnv) events(t *testing.T) []AuditEvent {
	t.Helper()
	f, err := os.Open(g.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if strings.Contains(sc.Text(), "rdsgate-iam-v1") || strings.Contains(sc.Text(), "X-Amz-Signature") || strings.Contains(sc.Text(), "secret") {
			t.Fatalf("the audit trail holds a secret: %s", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

func TestGatewayIAMIdentity(t *testing.T) {
	g := newIAMEnv(t)
	now := time.Now()

	// Allowed: an assumed role's session, mapped back to its role.
	if out, err := g.psql(t, g.token(t, "alice", gatewayAudience, now), "app", "pg/postgres"); err != nil || !strings.Contains(out, "app") {
		t.Fatalf("alice: %v %s", err, out)
	}
	denials := []struct {
		name, who, user, db string
		token               string
		want                string
	}{
		{"wrong db user", "alice", "admin", "pg/postgres", "",
			`arn:aws:sts::123456789012:assumed-role/data-engineers/alice@example.com may not connect to pg as "admin" on database "postgres": rule "engineers" allows pg only as db_users [app] on db_names [postgres shop]: add "admin"`},
		{"wrong db name", "alice", "app", "pg/template1", "", `rule "engineers" allows pg only as db_users [app] on db_names [postgres shop]`},
		{"no rule", "bob", "app", "pg/postgres", "", `arn:aws:iam::123456789012:user/bob may not connect to pg as "app" on database "postgres": no rule allows it`},
		{"deny wins", "mallory", "app", "pg/postgres", "", `rule "no-contractors-on-pg" denies it`},
		{"expired token", "alice", "app", "pg/postgres", g.token(t, "alice", gatewayAudience, now.Add(-10*time.Minute)), "the identity token expired at"},
		{"token for another gateway", "alice", "app", "pg/postgres", g.token(t, "alice", "another-gateway", now),
			"STS refused the identity token (SignatureDoesNotMatch): it was signed for another gateway"},
		{"a password, not a token", "alice", "app", "pg/postgres", "hunter2", "prove who you are with a client certificate, or with an IAM identity token"},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			tok := d.token
			if tok == "" {
				tok = g.token(t, d.who, gatewayAudience, now)
			}
			out, err := g.psql(t, tok, d.user, d.db)
			if err == nil || !strings.Contains(strings.Join(strings.Fields(out), " "), d.want) {
				t.Fatalf("%v: %s\nwant %q", err, out, d.want)
			}
		})
	}

	// MySQL: the same token, sent in clear text over TLS after an auth switch.
	addr := strings.Replace(g.srv.Addr("gateway-mysql"), "127.0.0.1", "localhost", 1)
	out, err := mysqlCLI(t, addr, "app", "--ssl", "--ssl-ca="+g.serverCA.PEMFile, "--ssl-verify-server-cert",
		"-p"+g.token(t, "alice", gatewayAudience, now), "-D", "my/shop", "-e", "SELECT CURRENT_USER(), DATABASE()")
	if err != nil || out != "app@%\tshop" {
		t.Fatalf("mysql as alice: %v %q", err, out)
	}
	out, err = mysqlCLI(t, addr, "app", "--ssl", "--ssl-ca="+g.serverCA.PEMFile,
		"-p"+g.token(t, "bob", gatewayAudience, now), "-D", "my/shop", "-e", "SELECT 1")
	if err == nil || !strings.Contains(out, "ERROR 1045") || !strings.Contains(out, "user/bob") {
		t.Fatalf("mysql as bob: %v %s", err, out)
	}

	// The audit trail: exactly these events, in this order.
	deadline := time.Now().Add(5 * time.Second)
	var events []AuditEvent
	for time.Now().Before(deadline) {
		if events = g.events(t); len(events) >= 13 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	type brief struct{ event, identity, db, user, result string }
	var got []brief
	for _, e := range events {
		got = append(got, brief{e.Event, e.Identity, e.Database, e.DBUser, e.Result})
	}
	alice, bob, mallory := "arn:aws:sts::123456789012:assumed-role/data-engineers/alice@example.com", "arn:aws:iam::123456789012:user/bob", "arn:aws:sts::123456789012:assumed-role/contractors/mallory"
	want := []brief{
		{"session_start", alice, "pg", "app", "ok"},
		{"session_end", alice, "pg", "app", "ok"},
		{"denied", alice, "pg", "admin", "rbac"},
		{"denied", alice, "pg", "app", "rbac"},
		{"denied", bob, "pg", "app", "rbac"},
		{"denied", mallory, "pg", "app", "rbac"},
		{"denied", "", "pg", "app", "identity"},
		{"denied", "", "pg", "app", "identity"},
		{"denied", "", "pg", "app", "no_identity"},
		{"session_start", alice, "my", "app", "ok"},
		{"session_end", alice, "my", "app", "ok"},
		{"denied", bob, "my", "app", "rbac"},
	}
	if len(got) != len(want) {
		t.Fatalf("audit events:\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("audit event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if end := events[1]; end.BytesToClient == 0 || end.BytesToDB == 0 || end.Seconds <= 0 || end.Client == "" {
		t.Errorf("a session's end has no bytes or duration: %+v", end)
	}
	if d := events[2]; d.Rule != "engineers" || !strings.Contains(d.Reason, `add "admin"`) {
		t.Errorf("a denial does not name the rule to change: %+v", d)
	}
}
