package proxyd

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthMetricsAndLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) { c.MaxConnections = 2 })
	base := "http://" + e.srv.HealthAddr()
	for _, path := range []string{"/startup", "/liveness", "/readiness"} {
		if code, body := get(t, base+path); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	ctx := context.Background()
	for range 3 {
		if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1"); err != nil {
			t.Fatal(err, out)
		}
	}
	_, _ = psql(t, e.pgDSN("pg", "intruder", "postgres"), "-c", "select 1")
	// Two held connections fill the proxy: the third is refused in each
	// protocol's own terms, and readiness says why.
	a, err := pgx.Connect(ctx, e.pgDSN("pg", "app", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Connect(e.srv.Addr("my"), "app", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1"); err == nil || !strings.Contains(out, "rdsgate: too many connections (max_connections is 2)") {
		t.Fatalf("third PostgreSQL client: %v %s", err, out)
	}
	if out, err := mysqlCLI(t, e.srv.Addr("my"), "app", "-e", "SELECT 1"); err == nil || !strings.Contains(out, "1040") || !strings.Contains(out, "too many connections") {
		t.Fatalf("third MySQL client: %v %s", err, out)
	}
	if code, body := get(t, base+"/readiness"); code != 503 || !strings.Contains(body, "at max connections (2)") {
		t.Fatalf("readiness at max: %d %s", code, body)
	}
	a.Close(ctx)
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, metrics := get(t, base+"/metrics")
	metrics = html.UnescapeString(metrics)
	for _, want := range []string{
		`rdsgate_proxy_connections_total{database="pg",result="ok"} 4`,
		`rdsgate_proxy_connections_total{database="pg",result="denied"} 1`,
		`rdsgate_proxy_connections_total{database="pg",result="refused"} 1`,
		`rdsgate_proxy_connections_total{database="my",result="refused"} 1`,
		`rdsgate_proxy_auth_failures_total{database="pg",reason="db_user"} 1`,
		`rdsgate_proxy_token_cache_total{result="hit"} 3`,
		`rdsgate_proxy_token_cache_total{result="miss"} 2`,
		`rdsgate_proxy_connections_active{database="pg"} 0`,
		`rdsgate_proxy_backend_dial_seconds_count{database="pg"} 4`,
		`rdsgate_proxy_sts_calls_total 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(metrics, `rdsgate_proxy_bytes_total{database="pg",direction="to_client"}`) {
		t.Error("no byte counts")
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	conn := e.pgConn(t, "pg")
	addr := e.srv.Addr("pg")
	healthAddr := e.srv.HealthAddr()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		done <- e.srv.Shutdown(sctx)
	}()
	time.Sleep(200 * time.Millisecond)
	// Draining: no new connections, readiness fails, the open one still works.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still accepts connections while draining")
	}
	if code, _ := get(t, "http://"+healthAddr+"/readiness"); code != 503 {
		t.Fatalf("readiness while draining: %d", code)
	}
	var v int
	if err := conn.QueryRow(ctx, "select 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("open session stopped working while draining: %v", err)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "closed 1 connection still open after the drain limit") || !strings.Contains(err.Error(), "user=app") {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %s", took)
	}
	if err := conn.QueryRow(ctx, "select 1").Scan(&v); err == nil {
		t.Fatal("the session survived the drain limit")
	}
}

// TestRoleChaining: the proxy assumes a base role, then each database's
// shard role, through moto's STS; the emulator verifies tokens signed with
// the chained credentials. STS is called once per role and credential
// lifetime, not per connection.
func TestRoleChaining(t *testing.T) {
	t.Parallel()
	m := testenv.StartMoto(t)
	var rec *testenv.STSRecorder
	e := newEnv(t, func(e *env, c *Config) {
		rec = testenv.StartSTSRecorder(t, m.URL, func(id, secret, session string) { e.keys.Add(id, secret, session) })
		c.AssumeRoleARN = "arn:aws:iam::123456789012:role/rdsgate-proxy"
		c.Databases[0].AssumeRoleARN = "arn:aws:iam::123456789012:role/rdsgate/rdsgate-proxy/rdsgate-proxy-shard-001"
	})
	e.srv.Close()
	cfg := e.awsConfig()
	cfg.BaseEndpoint = aws.String(rec.URL)
	e.start(WithAWSConfig(cfg))
	for i := range 20 {
		if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 1"); err != nil || out != "1" {
			t.Fatalf("connection %d: %v %s (emulator: %s)", i, err, out, e.pgEmu.LastRefusal())
		}
	}
	if n := rec.Issued.Load(); n != 2 {
		t.Fatalf("STS issued %d credentials for 20 connections over 2 chained roles, want 2", n)
	}
	_, metrics := get(t, "http://"+e.srv.HealthAddr()+"/metrics")
	if !strings.Contains(metrics, "rdsgate_proxy_sts_calls_total 2") || !strings.Contains(metrics, `rdsgate_proxy_token_cache_total{result="hit"} 19`) {
		t.Fatalf("metrics:\n%s", grepLines(metrics, "rdsgate_proxy_sts|rdsgate_proxy_token"))
	}
}

func grepLines(s, pattern string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range strings.Split(pattern, "|") {
			if strings.Contains(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestReload: a new RBAC, a database added and one removed take effect for
// new connections while open sessions go on; a change that needs a restart
// changes nothing.
func TestReload(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	ctx := context.Background()
	held, err := pgx.Connect(ctx, strings.Replace(g.pgDSN("alice", "localhost", "app", "pg/postgres"), " hostaddr=127.0.0.1", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)
	cfg := *g.srv.config()
	cfg.Databases = append([]Database(nil), cfg.Databases...)
	// RBAC: alice loses pg.
	rbac := &RBAC{Rules: []Rule{{Name: "app-team", Identities: []string{"CN=alice"}, Databases: []string{"my"}, DBUsers: []string{"app"}, DBNames: []string{"shop"}}}}
	rbacFile := filepath.Join(t.TempDir(), "rbac.json")
	data, _ := json.Marshal(rbac)
	if err := os.WriteFile(rbacFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	gw := *cfg.Gateway
	gw.RBACFile = rbacFile
	cfg.Gateway = &gw
	// A sidecar listener for a new database.
	extra := cfg.Databases[0]
	extra.Name, extra.Listen = "pg2", "127.0.0.1:0"
	cfg.Databases = append(cfg.Databases, extra)
	changes, err := g.srv.Reload(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(changes, "; "), "added pg2") {
		t.Errorf("changes: %q", changes)
	}
	var n int
	if err := held.QueryRow(ctx, "select 1").Scan(&n); err != nil {
		t.Fatalf("an open session after a reload: %v", err)
	}
	if out, err := psql(t, g.pgDSN("alice", "localhost", "app", "pg/postgres"), "-c", "select 1"); err == nil || !strings.Contains(out, "no rule allows it") {
		t.Fatalf("the old RBAC still holds: %v %s", err, out)
	}
	addr := g.srv.Addr("pg2")
	if addr == "" {
		t.Fatal("no listener for the added database")
	}
	host, port := splitAddr(t, addr)
	if out, err := psql(t, "host="+host+" port="+port+" user=app dbname=postgres sslmode=disable", "-c", "select current_user"); err != nil || out != "app" {
		t.Fatalf("the added database: %v %s", err, out)
	}
	// Removing it closes its listener. (Reload keeps the configuration it
	// is given: change a copy.)
	next := cfg
	next.Databases = cfg.Databases[:len(cfg.Databases)-1]
	if _, err := g.srv.Reload(&next); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		t.Fatal("the removed database's listener still accepts")
	}
	// A change that needs a restart is refused whole.
	bad := next
	bad.HealthAddress = "127.0.0.1:1"
	bad.Databases = append(append([]Database(nil), next.Databases...), extra)
	if _, err := g.srv.Reload(&bad); err == nil || !strings.Contains(err.Error(), "health_address changed, which needs a restart") {
		t.Fatalf("restart-only change: %v", err)
	}
	if g.srv.config().Database("pg2") != nil {
		t.Fatal("a refused reload changed the configuration")
	}
}
