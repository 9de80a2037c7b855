package proxyd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// Hostile clients: each test attacks a promise of the gateway the way a
// security reviewer did, against real MariaDB and PostgreSQL servers.

func (g *gatewayEnv) mysqlConn(t *testing.T, who, db string) *client.Conn {
	t.Helper()
	cert := testenv.TLSCert(t, g.certs[who][0], g.certs[who][1])
	conf := &tls.Config{RootCAs: g.serverCA.Pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
	c, err := client.Connect(g.srv.Addr("gateway-mysql"), "app", "", db, func(c *client.Conn) error { c.SetTLSConfig(conf); return nil })
	if err != nil {
		t.Fatalf("%s connects to %s: %v", who, db, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMySQLGatewayKeepsRBACAfterLogin: a client allowed only some database
// names cannot reach others with USE or COM_INIT_DB, cannot become another
// database user with COM_CHANGE_USER, and the audit trail says what it did.
func TestMySQLGatewayKeepsRBACAfterLogin(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	alice := g.mysqlConn(t, "alice", "my/shop")
	for _, q := range []string{
		"USE mysql",
		"use `mysql`",
		"/* hello */ USE mysql",
		"SELECT 1; USE mysql",
		"/*!40101 USE mysql */",
		"USE shop; USE mysql",
	} {
		_, err := alice.Execute(q)
		if err == nil || !strings.Contains(err.Error(), "rdsgate:") {
			t.Errorf("%q: %v", q, err)
		}
	}
	if err := alice.UseDB("mysql"); err == nil || !strings.Contains(err.Error(), `may not connect to my as "app" on database "mysql"`) {
		t.Errorf("COM_INIT_DB mysql: %v", err)
	}
	r, err := alice.Execute("SELECT DATABASE()")
	if err != nil {
		t.Fatal(err)
	}
	if db, _ := r.GetString(0, 0); db != "shop" {
		t.Fatalf("after refused changes the session is on %q", db)
	}
	// Allowed changes pass, and are audited.
	if _, err := alice.Execute("USE postgres"); err != nil && !strings.Contains(err.Error(), "Unknown database") {
		t.Fatalf("an allowed USE: %v", err)
	}
	if err := alice.UseDB("shop"); err != nil {
		t.Fatalf("an allowed COM_INIT_DB: %v", err)
	}
	// The mysql client's own `use` is COM_INIT_DB too.
	addr := strings.Replace(g.srv.Addr("gateway-mysql"), "127.0.0.1", "localhost", 1)
	out, err := mysqlCLI(t, addr, "app", "--ssl", "--ssl-ca="+g.serverCA.PEMFile, "--ssl-verify-server-cert", "--ssl-cert="+g.certs["alice"][0],
		"--ssl-key="+g.certs["alice"][1], "-D", "my/shop", "-e", "use mysql\nselect count(*) from user")
	if err == nil || !strings.Contains(out, "rdsgate:") {
		t.Errorf("mysql's use: %v %s", err, out)
	}

	// COM_CHANGE_USER to another user is refused, and the session ends.
	c := g.mysqlConn(t, "alice", "my/shop")
	c.ResetSequence()
	pkt := append(make([]byte, 4), mysql.COM_CHANGE_USER)
	pkt = append(pkt, "admin\x00\x00shop\x00"...)
	if err := c.WritePacket(pkt); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ReadPacket()
	if err != nil || len(resp) == 0 || resp[0] != 0xff || !strings.Contains(string(resp), "changing the database user in a session is not allowed") {
		t.Fatalf("COM_CHANGE_USER: %v %q", err, resp)
	}
	if _, err := c.ReadPacket(); err == nil {
		t.Fatal("the session goes on after COM_CHANGE_USER")
	}
	logs := g.logs.String()
	for _, want := range []string{`"msg":"change of database denied"`, `"msg":"database changed"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s", want)
		}
	}
}

// TestMySQLGatewayKillOnlyOwnQueries: KILL reaches the client's own
// connections only, however it is written.
func TestMySQLGatewayKillOnlyOwnQueries(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	victim := g.mysqlConn(t, "dora", "my/shop")
	r, err := victim.Execute("SELECT CONNECTION_ID()")
	if err != nil {
		t.Fatal(err)
	}
	thread, _ := r.GetInt(0, 0)
	done := make(chan error, 1)
	go func() {
		r, err := victim.Execute("SELECT SLEEP(3)")
		if err == nil {
			if v, _ := r.GetInt(0, 0); v != 0 {
				err = errors.New("interrupted")
			}
		}
		done <- err
	}()
	attacker := g.mysqlConn(t, "alice", "my/shop")
	time.Sleep(200 * time.Millisecond)
	for _, q := range []string{
		"/* x */ KILL QUERY " + itoa(int(thread)),
		"KILL QUERY " + itoa(int(thread)),
		"KILL QUERY " + itoa(int(victim.GetConnectionID())),
		"-- x\nKILL " + itoa(int(thread)),
		"# x\nKILL QUERY " + itoa(int(thread)),
		"/*!50000 KILL */ QUERY " + itoa(int(thread)),
		"SELECT 1; KILL QUERY " + itoa(int(thread)),
		"KILL QUERY " + itoa(int(thread)) + "+0",
		"SELECT '\\'; KILL QUERY " + itoa(int(thread)) + "; -- '",
	} {
		_, err := attacker.Execute(q)
		if err == nil {
			t.Errorf("%q was let through and succeeded", q)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("another identity's query was killed: %v", err)
	}
}

func TestJudgeMySQLQuery(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]string{
		"SELECT 1":                       "",
		"select * from t use index (i)":  "",
		"SELECT 'use mysql; kill 3'":     "",
		"SELECT `kill` FROM t":           "",
		"USE shop":                       "use shop",
		"use `my db`":                    "use my db",
		"/* c */ USE shop ;":             "use shop",
		"SELECT 1;\nUSE x":               "use x",
		"USE a; USE b":                   "use a use b",
		"USE a b":                        "refuse",
		"USE 'a'":                        "refuse",
		"KILL 12":                        "kill 12",
		"  kill  query 12 ;":             "kill query 12",
		"/* x */ KILL CONNECTION 12":     "kill 12",
		"KILL QUERY 12; SELECT 1":        "refuse",
		"KILL USER app":                  "refuse",
		"KILL QUERY ID 12":               "refuse",
		"KILL (12)":                      "refuse",
		"CREATE EVENT e DO KILL 12":      "refuse",
		"SELECT '\\'; KILL 5; -- '":      "refuse",
		"/*!99999 ' */ KILL 5 -- '":      "refuse",
		"SELECT 1 -- x\n; KILL 5":        "refuse",
		"SELECT 1 --x\n; USE y":          "use y",
		"SELECT \"a\\\"; USE y; -- \"":   "use y",
		"SELECT 1 /* unterminated USE y": "",
		"/*M!100100 USE y */":            "use y",
	} {
		v := judgeMySQLQuery([]byte(q))
		var got string
		switch {
		case v.refuse != "":
			got = "refuse"
		case v.kill != nil:
			got = "kill "
			if v.kill.query {
				got += "query "
			}
			got += itoa(int(v.kill.id))
		case len(v.use) > 0:
			got = "use " + strings.Join(v.use, " use ")
		}
		if got != want {
			t.Errorf("%q: %q, want %q", q, got, want)
		}
	}
}

// flood opens n connections from the loopback address from to addr that
// never send a byte, as a pre-auth flood does.
func flood(t *testing.T, addr, from string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	var conns []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood from %s: %v", from, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

func (s *Server) pendingNow() int {
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	return s.pending.total
}

// waitFor polls cond until it holds; the deadline is generous, as the
// machine may be busy, and never the thing measured.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPreAuthFloodsDoNotLockOutClients: connections that send nothing are
// counted apart from logged-in sessions, per source and in all, and end
// after the handshake timeout; readiness stays about the proxy's health.
func TestPreAuthFloodsDoNotLockOutClients(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t, func(c *Config) {
		c.MaxConnections = 20
		c.MaxPendingLogins = 300
		c.MaxPendingLoginsPerSource = 50
		c.HandshakeTimeout = Duration(3 * time.Second)
	})
	addr := g.srv.Addr("gateway-postgres")
	health := "http://" + g.srv.HealthAddr() + "/readiness"
	legit := func() (string, error) {
		return psql(t, g.pgDSN("alice", "localhost", "app", "pg/postgres"), "-c", "select current_user")
	}
	ctx := context.Background()
	held, err := pgx.Connect(ctx, strings.Replace(g.pgDSN("alice", "localhost", "app", "pg/postgres"), " hostaddr=127.0.0.1", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)

	// One source: 1,000 silent connections hold 50 places; everyone else
	// gets in.
	flood(t, addr, "127.0.0.2", 1000)
	waitFor(t, "the flood to be counted", func() bool {
		return g.srv.pendingNow() == 50 && counterValue(g.srv.metrics.connections.WithLabelValues("gateway", "refused_pending")) == 950
	})
	if out, err := legit(); err != nil || out != "app" {
		t.Fatalf("a client with a valid certificate during a one-source flood: %v %s", err, out)
	}
	if code, body := get(t, health); code != 200 {
		t.Fatalf("readiness during a flood: %d %s", code, body)
	}
	var one int
	if err := held.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Fatalf("an established session during the flood: %v", err)
	}

	// Many sources fill max_pending_logins: a new client is told why, in
	// its protocol, and readiness still says the proxy is healthy.
	for i := 3; i < 11; i++ {
		flood(t, addr, "127.0.0."+itoa(i), 50)
	}
	waitFor(t, "max_pending_logins to fill", func() bool { return g.srv.pendingNow() == 300 })
	// (libpq does not print an error sent instead of a TLS handshake; the
	// proxy's log and metrics say why.)
	if out, err := legit(); err == nil || !strings.Contains(out, "error response during SSL exchange") {
		t.Fatalf("a client when max_pending_logins is full: %v %s", err, out)
	}
	if !strings.Contains(g.logs.String(), "too many connections waiting to log in (max_pending_logins is 300)") {
		t.Fatal("the log does not say why clients are refused")
	}
	if code, body := get(t, health); code != 200 {
		t.Fatalf("readiness while shedding a flood: %d %s", code, body)
	}
	// The handshake timeout ends the flood; clients get in again.
	waitFor(t, "the handshake timeout to end the flood", func() bool { return g.srv.pendingNow() == 0 })
	if out, err := legit(); err != nil || out != "app" {
		t.Fatalf("a client after the flood: %v %s", err, out)
	}
	// psql has gone; its session ends on the proxy's side soon after.
	waitFor(t, "the sessions that ended to give back their places", func() bool { return g.srv.established.Load() == 1 })
	if n := strings.Count(g.logs.String(), "connection refused before login"); n > 20 {
		t.Errorf("the flood wrote %d log lines; unauthenticated junk must be rate-limited", n)
	}
}

// TestMySQLPreAuthPacketsAreBounded: a client that claims a huge packet
// before logging in is cut off at once; it does not make the gateway hold
// the memory it claims.
func TestMySQLPreAuthPacketsAreBounded(t *testing.T) {
	t.Parallel()
	g := newGatewayEnv(t)
	for _, size := range []int{1 << 20, maxMySQLClientLoginPacket + 1} {
		c, err := net.Dial("tcp", g.srv.Addr("gateway-mysql"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := readMySQLPacket(c, maxMySQLServerLoginPacket); err != nil {
			t.Fatalf("greeting: %v", err)
		}
		if _, err := c.Write([]byte{byte(size), byte(size >> 8), byte(size >> 16), 1, 'x'}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 64)
		_, err = io.ReadFull(c, buf)
		if err == nil || isTimeout(err) {
			t.Fatalf("a %d-byte pre-auth packet: the gateway waits for it (%v)", size, err)
		}
		c.Close()
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestSidecarPreAuthLimits: the sidecar listeners bound pre-auth
// connections the same way (PostgreSQL and MySQL).
func TestSidecarPreAuthLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) { c.MaxPendingLoginsPerSource = 20; c.MaxConnections = 5 })
	flood(t, e.srv.Addr("pg"), "127.0.0.2", 200)
	flood(t, e.srv.Addr("my"), "127.0.0.2", 200)
	// A source's places are counted across listeners: the PostgreSQL
	// flood holds all 20, and every MySQL one is refused.
	waitFor(t, "the floods to be counted", func() bool {
		return counterValue(e.srv.metrics.connections.WithLabelValues("pg", "refused_pending")) == 180 &&
			counterValue(e.srv.metrics.connections.WithLabelValues("my", "refused_pending")) == 200
	})
	if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select current_user"); err != nil || out != "app" {
		t.Fatalf("psql during a sidecar flood: %v %s", err, out)
	}
	if out, err := mysqlCLI(t, e.srv.Addr("my"), "app", "-e", "SELECT CURRENT_USER()"); err != nil || !strings.HasPrefix(out, "app@") {
		t.Fatalf("mysql during a sidecar flood: %v %s", err, out)
	}
	// The flood is refused at accept with the protocol's own error.
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", e.srv.Addr("my"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, p, err := readMySQLPacket(c, maxMySQLServerLoginPacket)
	if err != nil || len(p) == 0 || p[0] != 0xff || !strings.Contains(string(p), "max_pending_logins_per_source is 20") {
		t.Fatalf("a refused MySQL connection reads %q (%v)", p, err)
	}
}

// TestFailedTLSIsAudited: a certificate the client CA did not sign is
// refused in the handshake, and the refusal is in the audit trail.
func TestFailedTLSIsAudited(t *testing.T) {
	t.Parallel()
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	g := newGatewayEnv(t, func(c *Config) { c.AuditLog = audit })
	otherDir := t.TempDir()
	other := testenv.NewCA(t, otherDir)
	cert, key := other.Issue(t, "alice", true)
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	g.certs["forged"] = [2]string{cert, key}
	if out, err := psql(t, g.pgDSN("forged", "localhost", "app", "pg/postgres"), "-c", "select 1"); err == nil {
		t.Fatalf("a certificate from another CA logged in: %s", out)
	}
	waitFor(t, "the refusal in the audit trail", func() bool {
		data, _ := os.ReadFile(audit)
		return strings.Contains(string(data), `"result":"tls"`) && strings.Contains(string(data), "TLS handshake failed")
	})
}
