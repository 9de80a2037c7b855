package proxyd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// TestBackendPIDIsTheServers: a client sees the server's backend PID in
// BackendKeyData, so pg_backend_pid(), pg_terminate_backend(conn PID) and
// notifications mean what they mean against RDS; with reuse_connections,
// each client of a kept server connection sees that connection's PID.
func TestBackendPIDIsTheServers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) {
		reuse := c.Databases[0]
		reuse.Name, reuse.ReuseConnections = "pg-reuse", true
		c.Databases = append(c.Databases, reuse)
		c.Databases[len(c.Databases)-1].Listen = "127.0.0.1:0"
	})
	ctx := context.Background()
	for _, db := range []string{"pg", "pg-reuse"} {
		t.Run(db, func(t *testing.T) {
			a, b := e.pgConn(t, db), e.pgConn(t, db)
			for _, c := range []*pgx.Conn{a, b} {
				var server uint32
				if err := c.QueryRow(ctx, "select pg_backend_pid()").Scan(&server); err != nil {
					t.Fatal(err)
				}
				if got := c.PgConn().PID(); got != server {
					t.Fatalf("BackendKeyData PID %d, pg_backend_pid() %d", got, server)
				}
			}
			// A notification names the sender's backend as the client knows it.
			if _, err := a.Exec(ctx, "listen wire"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Exec(ctx, "notify wire, 'x'"); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			n, err := a.WaitForNotification(wctx)
			if err != nil || n.PID != b.PgConn().PID() {
				t.Fatalf("notification from PID %v (%v), the sender's is %d", n, err, b.PgConn().PID())
			}
			// Terminating one's own PID ends one's own session, nobody else's.
			var ok bool
			if err := b.QueryRow(ctx, "select pg_terminate_backend($1)", a.PgConn().PID()).Scan(&ok); err != nil || !ok {
				t.Fatalf("pg_terminate_backend(a's PID): %v %v", ok, err)
			}
			if err := a.Ping(ctx); err == nil {
				t.Fatal("a's session survived pg_terminate_backend of its PID")
			}
			if err := b.Ping(ctx); err != nil {
				t.Fatalf("b's session was ended too: %v", err)
			}
			// Cancel still reaches the right query, with the proxy's secret.
			go func() {
				time.Sleep(300 * time.Millisecond)
				_ = b.PgConn().CancelRequest(ctx)
			}()
			if _, err := b.Exec(ctx, "select pg_sleep(20)"); err == nil {
				t.Fatal("the cancel did not reach the query")
			}
		})
	}
}

// TestProtocol32Startup: a client that asks for protocol 3.2 with a _pq_
// option gets the server's NegotiateProtocolVersion first, then
// AuthenticationOk, as it would from the server (PostgreSQL 15 here
// answers 3.0; a 3.2 server's longer cancel key keeps its length).
func TestProtocol32Startup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) {
		reuse := c.Databases[0]
		reuse.Name, reuse.ReuseConnections, reuse.Listen = "pg-reuse", true, "127.0.0.1:0"
		c.Databases = append(c.Databases, reuse)
	})
	for _, db := range []string{"pg", "pg-reuse", "pg-reuse"} {
		c, err := net.Dial("tcp", e.srv.Addr(db))
		if err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(c, c)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
			Parameters: map[string]string{"user": "app", "database": "postgres", "_pq_.rdsgate_test": "1"}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var order []string
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("%s: %v after %v", db, err, order)
			}
			order = append(order, fmt.Sprintf("%T", m))
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if len(order) < 2 || order[0] != "*pgproto3.NegotiateProtocolVersion" || order[1] != "*pgproto3.AuthenticationOk" {
			t.Fatalf("%s: the startup answers come in the order %v", db, order)
		}
		fe.Send(&pgproto3.Terminate{})
		_ = fe.Flush()
		c.Close()
		waitFor(t, "the session to end", func() bool { return e.srv.Active() == 0 })
		if db == "pg-reuse" {
			waitFor(t, "the server connection to be kept", func() bool { return e.srv.pool.size() > 0 })
		}
	}
	if n := counterValue(e.srv.metrics.reused.WithLabelValues("pg-reuse")); n != 1 {
		t.Fatalf("the second 3.2 client got a kept connection %v times, want 1", n)
	}
}

// TestUnixSockets: socket listeners are where libpq and mysql look, with
// the configured mode and group.
func TestUnixSockets(t *testing.T) {
	t.Parallel()
	dir := testenv.ServerDir(t, "rdsgate-sock-")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	e := newEnv(t, func(e *env, c *Config) {
		c.Databases[0].Listen = "unix:" + SocketPath(dir, ProtocolPostgres, "pg", port)
		c.Databases[1].Listen = "unix:" + SocketPath(dir, ProtocolMySQL, "my", 0)
		c.SocketMode, c.SocketGroup = "0660", group.Name
	})
	out, err := psql(t, fmt.Sprintf("host=%s port=%d user=app dbname=postgres", dir, port), "-c", "select current_user")
	if err != nil || out != "app" {
		t.Fatalf("psql host=%s port=%d: %v %s", dir, port, err, out)
	}
	sock := filepath.Join(dir, "my.sock")
	cmd := exec.Command("mariadb", "--no-defaults", "--socket="+sock, "-uapp", "-N", "-B", "-e", "SELECT CURRENT_USER()")
	if o, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(o), "app@") {
		t.Fatalf("mariadb --socket: %v %s", err, o)
	}
	for _, p := range []string{filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", port)), sock} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o660 || fmt.Sprint(st.Sys().(*syscall.Stat_t).Gid) != group.Gid {
			t.Errorf("%s: mode %v gid %d, want 0660 and %s", p, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, group.Gid)
		}
	}
	_ = e
	// A PostgreSQL socket no client would find is refused with the right name.
	_, err = ParseConfig([]byte(`{"ca_bundle":"x","region":"r","databases":[{"name":"orders","protocol":"postgres","endpoint":"h:5432","listen":"unix:/run/rdsgate/orders.sock"}]}`), "proxy.json")
	if err == nil || !strings.Contains(err.Error(), "use unix:/run/rdsgate/.s.PGSQL.5432") {
		t.Fatalf("a socket libpq cannot find: %v", err)
	}
}

// TestSidecarTLSFromClients: RDS connection strings often carry
// sslmode=require or verify-full; a sidecar TCP listener answers TLS with
// the configured certificate (verify-full passes) or one it made at start,
// for PostgreSQL and MySQL, and the session relays over it.
func TestSidecarTLSFromClients(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, t.TempDir())
	cert, key := ca.Issue(t, "proxy", false, "localhost", "127.0.0.1")
	made := newEnv(t, nil)
	configured := newEnv(t, func(e *env, c *Config) { c.ClientTLSCert, c.ClientTLSKey = cert, key })
	if !strings.Contains(made.logs.String(), "sha256_fingerprint") {
		t.Error("the certificate made at start is not logged with its fingerprint")
	}
	for name, e := range map[string]*env{"made at start": made, "configured": configured} {
		host, port := splitAddr(t, e.srv.Addr("pg"))
		dsn := "host=" + host + " port=" + port + " user=app dbname=postgres sslmode=require"
		if name == "configured" {
			dsn = "host=localhost hostaddr=" + host + " port=" + port + " user=app dbname=postgres sslmode=verify-full sslrootcert=" + ca.PEMFile
		}
		out, err := psql(t, dsn, "-c", "select current_user, count(*) from items")
		if err != nil || out != "app|1000" {
			t.Fatalf("%s: psql %s: %v %s", name, dsn, err, out)
		}
		out, err = psql(t, dsn, "-c", `\conninfo`)
		if err != nil || !strings.Contains(out, "SSL connection") {
			t.Fatalf("%s: psql's connection is not TLS: %v %s", name, err, out)
		}
		args := []string{"--ssl", "-e", "SHOW STATUS LIKE 'Ssl_version'"}
		if name == "configured" {
			args = []string{"--ssl", "--ssl-ca=" + ca.PEMFile, "--ssl-verify-server-cert", "-e", "SELECT CURRENT_USER()"}
		}
		addr := e.srv.Addr("my")
		if name == "configured" {
			addr = strings.Replace(addr, "127.0.0.1", "localhost", 1)
		}
		if out, err := mysqlCLI(t, addr, "app", args...); err != nil || out == "" {
			t.Fatalf("%s: mysql --ssl: %v %s", name, err, out)
		}
	}
}

// TestSilentDatabaseSaysTimeoutNotClose: a database that does not answer
// is reported as a timeout, one that hangs up as a close.
func TestSilentDatabaseSaysTimeoutNotClose(t *testing.T) {
	t.Parallel()
	listen := func(hangUp bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if hangUp {
					c.Close()
				} else {
					t.Cleanup(func() { c.Close() })
				}
			}
		}()
		return ln.Addr().String()
	}
	silent, closing := listen(false), listen(true)
	e := newEnv(t, func(e *env, c *Config) {
		c.DialTimeout = Duration(time.Second)
		extra := c.Databases[0]
		extra.Name, extra.Endpoint, extra.Listen = "silent", silent, "127.0.0.1:0"
		c.Databases = append(c.Databases, extra)
		extra.Name, extra.Endpoint = "closing", closing
		c.Databases = append(c.Databases, extra)
		my := c.Databases[1]
		my.Name, my.Endpoint = "silent-my", silent
		c.Databases = append(c.Databases, my)
	})
	for db, want := range map[string]string{
		"silent":    "silent did not send the TLS request within 1s (dial_timeout)",
		"closing":   "closing closed the connection instead of sending the TLS request",
		"silent-my": "silent-my did not send its greeting within 1s",
	} {
		var out string
		if strings.HasSuffix(db, "-my") {
			out, _ = mysqlCLI(t, e.srv.Addr(db), "app", "-e", "SELECT 1")
		} else {
			out, _ = psql(t, e.pgDSN(db, "app", "postgres"), "-c", "select 1")
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s: %s\nwant %q", db, out, want)
		}
	}
}
