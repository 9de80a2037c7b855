package proxyd

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

type gatewayEnv struct {
	*env
	serverCA *testenv.CA
	certs    map[string][2]string // identity -> cert, key
}

func newGatewayEnv(t *testing.T, mutate ...func(*Config)) *gatewayEnv {
	t.Helper()
	g := &gatewayEnv{certs: map[string][2]string{}}
	dir := t.TempDir()
	g.serverCA = testenv.NewCA(t, dir)
	clientDir := filepath.Join(dir, "clients")
	if err := os.Mkdir(clientDir, 0o755); err != nil {
		t.Fatal(err)
	}
	clientCA := testenv.NewCA(t, clientDir)
	for who, subject := range map[string]pkix.Name{
		"alice": {CommonName: "alice", Organization: []string{"rdsgate tests"}}, "bob": {CommonName: "bob", Organization: []string{"rdsgate tests"}},
		"mallory": {CommonName: "mallory", Organization: []string{"rdsgate tests"}},
		// A DBA, and a certificate made to look like one when the subject
		// is matched as a string: its CN holds ",O=dba" and it has no O.
		"dora": {CommonName: "dora", Organization: []string{"dba"}}, "fake-dba": {CommonName: "mallory,O=dba"},
	} {
		cert, key := clientCA.IssueSubject(t, who, subject, true)
		if err := os.Chmod(key, 0o600); err != nil { // libpq refuses readable keys
			t.Fatal(err)
		}
		g.certs[who] = [2]string{cert, key}
	}
	serverCert, serverKey := g.serverCA.Issue(t, "gateway", false, "localhost", "*.localhost", "127.0.0.1")
	rbac := RBAC{Rules: []Rule{
		{Name: "app-team", Identities: []string{"CN=alice", "CN=mallory"}, Databases: []string{"pg", "my"}, DBUsers: []string{"app"}, DBNames: []string{"postgres", "shop"}},
		{Name: "no-mallory", Effect: "deny", Identities: []string{"CN=mallory"}, Databases: []string{"*"}},
		{Name: "dba", Identities: []string{"CN=*,O=dba"}, Databases: []string{"pg", "my"}, DBUsers: []string{"*"}, DBNames: []string{"*"}},
	}}
	rbacFile := filepath.Join(dir, "rbac.json")
	data, _ := json.Marshal(&rbac)
	if err := os.WriteFile(rbacFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g.env = newEnv(t, func(e *env, c *Config) {
		for i := range c.Databases {
			c.Databases[i].Listen = ""
		}
		c.Gateway = &Gateway{ListenPostgres: "127.0.0.1:0", ListenMySQL: "127.0.0.1:0", TLSCert: serverCert, TLSKey: serverKey,
			ClientCA: clientCA.PEMFile, RBACFile: rbacFile}
		for _, m := range mutate {
			m(c)
		}
	})
	return g
}

func (g *gatewayEnv) pgDSN(who, host, user, dbname string) string {
	_, port := splitAddr(g.t, g.srv.Addr("gateway-postgres"))
	dsn := "host=" + host + " hostaddr=127.0.0.1 port=" + port + " user=" + user + " dbname=" + dbname + " sslmode=verify-full sslrootcert=" + g.serverCA.PEMFile
	if c, ok := g.certs[who]; ok {
		dsn += " sslcert=" + c[0] + " sslkey=" + c[1]
	}
	return dsn
}

func TestGatewayPostgres(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	tests := []struct {
		name, who, host, user, dbname string
		ok                            bool
		want                          string
	}{
		{"allowed by database name", "alice", "localhost", "app", "pg/postgres", true, "app"},
		{"allowed by server name", "alice", "pg.localhost", "app", "postgres", true, "app"},
		{"other db user", "alice", "localhost", "other", "pg/postgres", false, `rule "app-team" allows pg only as db_users [app] on db_names [postgres shop]: add "other" and "postgres" there`},
		{"other identity", "bob", "localhost", "app", "pg/postgres", false, `CN=bob,O=rdsgate tests may not connect to pg as "app" on database "postgres": no rule allows it`},
		{"explicit deny wins", "mallory", "localhost", "app", "pg/postgres", false, `rule "no-mallory" denies it`},
		{"subject matched by attribute", "dora", "localhost", "other", "pg/postgres", true, "other"},
		{"a comma in the CN is not an O", "fake-dba", "localhost", "other", "pg/postgres", false, `CN=mallory\,O=dba may not connect to pg as "other" on database "postgres": no rule allows it`},
		{"the database's own db_users hold too", "dora", "localhost", "readonly", "pg/postgres", false, `rule "dba" allows it, but database pg may be reached only as db_users [app other nogrant]`},
		{"no client certificate", "nobody", "localhost", "app", "pg/postgres", false, "the gateway needs TLS with a client certificate"},
		{"unknown database", "alice", "localhost", "app", "nope/postgres", false, `no database "nope" behind this gateway`},
		{"wrong protocol", "alice", "localhost", "app", "my/shop", false, "my is a mysql database; connect to the gateway's mysql listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := psql(t, g.pgDSN(tt.who, tt.host, tt.user, tt.dbname), "-c", "select current_user")
			if tt.ok != (err == nil) || !strings.Contains(out, tt.want) {
				t.Fatalf("%v: %s; want ok=%v and %q", err, out, tt.ok, tt.want)
			}
		})
	}
	t.Run("cancel over TLS", func(t *testing.T) {
		ctx := context.Background()
		// pgx resolves localhost itself; hostaddr is libpq's alone.
		conn, err := pgx.Connect(ctx, strings.Replace(g.pgDSN("alice", "localhost", "app", "pg/postgres"), " hostaddr=127.0.0.1", "", 1))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		go func() {
			time.Sleep(500 * time.Millisecond)
			_ = conn.PgConn().CancelRequest(ctx)
		}()
		_, err = conn.Exec(ctx, "select pg_sleep(30)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("query was not cancelled: %v", err)
		}
	})
	if !strings.Contains(g.logs.String(), `"identity":"CN=alice,O=rdsgate tests"`) {
		t.Error("sessions are not logged with the client's identity")
	}
}

func TestGatewayMySQL(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	addr := g.srv.Addr("gateway-mysql")
	cli := func(who, db string, args ...string) (string, error) {
		base := []string{"--ssl", "--ssl-ca=" + g.serverCA.PEMFile, "--ssl-verify-server-cert", "-D", db}
		if c, ok := g.certs[who]; ok {
			base = append(base, "--ssl-cert="+c[0], "--ssl-key="+c[1])
		}
		return mysqlCLI(t, strings.Replace(addr, "127.0.0.1", "localhost", 1), "app", append(base, args...)...)
	}
	if out, err := cli("alice", "my/shop", "-e", "SELECT CURRENT_USER(), DATABASE()"); err != nil || out != "app@%\tshop" {
		t.Fatalf("allowed: %v %q", err, out)
	}
	if out, err := cli("bob", "my/shop", "-e", "SELECT 1"); err == nil || !strings.Contains(out, "ERROR 1045") || !strings.Contains(out, "no rule allows it") {
		t.Fatalf("other identity: %v %s", err, out)
	}
	if out, err := cli("alice", "my/mysql", "-e", "SELECT 1"); err == nil || !strings.Contains(out, `on database "mysql"`) {
		t.Fatalf("other database name: %v %s", err, out)
	}

	// KILL with the gateway's connection id reaches the database's thread,
	// for the same identity only.
	cert := testenv.TLSCert(t, g.certs["alice"][0], g.certs["alice"][1])
	tlsConf := &tls.Config{RootCAs: g.serverCA.Pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
	connect := func() *client.Conn {
		c, err := client.Connect(addr, "app", "", "my/shop", func(c *client.Conn) error { c.SetTLSConfig(tlsConf); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	busy, killer := connect(), connect()
	defer busy.Close()
	defer killer.Close()
	done := sleepQuery(busy)
	time.Sleep(500 * time.Millisecond)
	if _, err := killer.Execute("KILL QUERY " + itoa(int(busy.GetConnectionID()))); err != nil {
		t.Fatalf("KILL QUERY: %v", err)
	}
	select {
	case got := <-done:
		if got != "1" && !strings.Contains(got, "1317") {
			t.Fatalf("interrupted query: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KILL QUERY through the gateway did not interrupt the query")
	}
}
