package proxyd

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPostgresSidecar(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	dsn := e.pgDSN("pg", "app", "postgres")
	ctx := context.Background()

	t.Run("psql queries", func(t *testing.T) {
		out, err := psql(t, dsn, "-c", "select current_user, count(*) from items")
		if err != nil || out != "app|1000" {
			t.Fatalf("%v: %s", err, out)
		}
	})
	t.Run("large result", func(t *testing.T) {
		out, err := psql(t, dsn, "-c", "select md5(string_agg(g::text || repeat('x', 100), ',' order by g)) from generate_series(1, 200000) g")
		if err != nil {
			t.Fatal(err, out)
		}
		rows, err := psql(t, dsn, "-c", "select g, repeat('y', 200) from generate_series(1, 50000) g")
		if err != nil || strings.Count(rows, "\n") != 49999 {
			t.Fatalf("50,000 rows of 200 bytes: %v, %d lines", err, strings.Count(rows, "\n")+1)
		}
	})
	t.Run("copy both ways", func(t *testing.T) {
		var in strings.Builder
		for i := 2001; i <= 7000; i++ {
			in.WriteString(itoa(i) + "\tcopied " + itoa(i) + "\n")
		}
		cmd := exec.Command("psql", "-X", "-v", "ON_ERROR_STOP=1", dsn, "-c", `\copy items from stdin`)
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("copy in: %v %s", err, out)
		}
		out, err := psql(t, dsn, "-c", `\copy (select * from items where id > 2000 order by id) to stdout`)
		if err != nil || out+"\n" != in.String() {
			t.Fatalf("copy out differs from copy in: %v (%d bytes vs %d)", err, len(out)+1, in.Len())
		}
	})
	t.Run("prepared statements with pgx", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for i := 1; i <= 200; i++ {
			var name string
			if err := conn.QueryRow(ctx, "select name from items where id = $1", i).Scan(&name); err != nil || name != "item "+itoa(i) {
				t.Fatalf("row %d: %v %q", i, err, name)
			}
		}
		batch := &pgx.Batch{}
		for i := range 50 {
			batch.Queue("select $1::int * 2", i)
		}
		res := conn.SendBatch(ctx, batch)
		for i := range 50 {
			var v int
			if err := res.QueryRow().Scan(&v); err != nil || v != i*2 {
				t.Fatalf("batch %d: %v %d", i, err, v)
			}
		}
		res.Close()
	})
	t.Run("cancel", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		// A CancelRequest on its own connection, as libpq and pgx send it.
		go func() {
			time.Sleep(500 * time.Millisecond)
			_ = conn.PgConn().CancelRequest(ctx)
		}()
		start := time.Now()
		_, err = conn.Exec(ctx, "select pg_sleep(30)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("query was not cancelled by the database: %v", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("cancel took %s", took)
		}
		// A cancel with a key the proxy did not hand out goes nowhere.
		c, err := net.Dial("tcp", e.srv.Addr("pg"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef})
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("the proxy answered a bogus cancel request")
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		logged := func() bool {
			l := e.logs.String()
			return strings.Contains(l, "cancel request with an unknown key ignored") && strings.Contains(l, "query cancel passed to the database")
		}
		for !logged() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(e.logs.String(), "cancel request with an unknown key ignored") {
			t.Fatal("a bogus cancel request was not logged as ignored")
		}
		if !strings.Contains(e.logs.String(), "query cancel passed to the database") {
			t.Fatal("no log of the cancel")
		}
	})
	t.Run("denied user", func(t *testing.T) {
		out, err := psql(t, e.pgDSN("pg", "intruder", "postgres"), "-c", "select 1")
		if err == nil || !strings.Contains(out, `rdsgate: database user "intruder" may not connect to pg`) || !strings.Contains(out, "allowed users: app, other, nogrant") {
			t.Fatalf("%v: %s", err, out)
		}
	})
	t.Run("user without rds_iam", func(t *testing.T) {
		out, err := psql(t, e.pgDSN("pg", "nogrant", "postgres"), "-c", "select 1")
		if err == nil || !strings.Contains(out, `password authentication failed for user "nogrant"`) || !strings.Contains(out, "rdsgate db-user-sql") {
			t.Fatalf("%v: %s", err, out)
		}
	})
}

// wrongRegion is a second listener for an endpoint that signs its tokens
// for a region the database is not in, so the database refuses them.
func wrongRegion(name, proto, endpoint string) Database {
	return Database{Name: name, Protocol: proto, Endpoint: endpoint, Region: "eu-west-1", Listen: "127.0.0.1:0"}
}

func TestPostgresTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) {
		c.Databases = append(c.Databases, wrongRegion("pg-wrong-region", ProtocolPostgres, e.pgEmu.Endpoint))
	})
	out, err := psql(t, e.pgDSN("pg-wrong-region", "app", "postgres"), "-c", "select 1")
	if err == nil || !strings.Contains(out, `PAM authentication failed for user "app"`) || !strings.Contains(out, "rdsgate enable-iam-auth") {
		t.Fatalf("bad token: %v: %s", err, out)
	}
	if !strings.Contains(e.pgEmu.LastRefusal(), "region") {
		t.Fatalf("the emulator refused for another reason: %s", e.pgEmu.LastRefusal())
	}

	// A cached token RDS no longer accepts (its clock says 20 minutes have
	// passed): refused, and the client is told.
	dsn := e.pgDSN("pg", "app", "postgres")
	if out, err := psql(t, dsn, "-c", "select 1"); err != nil {
		t.Fatal(err, out)
	}
	e.advance(20 * time.Minute)
	out, err = psql(t, dsn, "-c", "select 1")
	if err == nil || !strings.Contains(e.pgEmu.LastRefusal(), "expired") {
		t.Fatalf("expired token: %v %s (%s)", err, out, e.pgEmu.LastRefusal())
	}
}

func TestPostgresBackendGoesAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	conn := e.pgConn(t, "pg")
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "select pg_sleep(20)")
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Active() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	e.pgEmu.DropSessions()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the query succeeded although the database went away")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not told that the database went away")
	}
	for e.srv.Active() != 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.srv.Active(); n != 0 {
		t.Fatalf("%d sessions left open after the database went away", n)
	}
	// A new connection works once the database is back.
	if out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select 42"); err != nil || out != "42" {
		t.Fatalf("reconnect: %v %s", err, out)
	}
}

// TestGoroutineRelay keeps the relay that other systems use working: a
// goroutine per direction instead of the event loop.
func TestGoroutineRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) { c.NoEventLoop = true })
	out, err := psql(t, e.pgDSN("pg", "app", "postgres"), "-c", "select count(*) from items")
	if err != nil || out != "1000" {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := mysqlCLI(t, e.srv.Addr("my"), "app", "-e", "SELECT 6*7"); err != nil || out != "42" {
		t.Fatalf("%v: %s", err, out)
	}
}
