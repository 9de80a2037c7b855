package proxyd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

func TestMySQLSidecar(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	addr := e.srv.Addr("my")

	t.Run("mysql client queries", func(t *testing.T) {
		out, err := mysqlCLI(t, addr, "app", "-e", "SELECT CURRENT_USER(), @@version LIKE '%MariaDB%'")
		if err != nil || out != "app@%\t1" {
			t.Fatalf("%v: %q", err, out)
		}
	})
	t.Run("large result and writes", func(t *testing.T) {
		out, err := mysqlCLI(t, addr, "app", "shop", "-e",
			"INSERT INTO items SELECT seq, REPEAT('z', 300) FROM seq_1_to_20000; SELECT COUNT(*), SUM(LENGTH(name)) FROM items;")
		if err != nil || out != "20000\t6000000" {
			t.Fatalf("%v: %q", err, out)
		}
		rows, err := mysqlCLI(t, addr, "app", "shop", "-e", "SELECT id, name FROM items ORDER BY id")
		if err != nil || strings.Count(rows, "\n") != 19999 {
			t.Fatalf("20,000 rows: %v, %d lines", err, strings.Count(rows, "\n")+1)
		}
	})
	t.Run("compression end to end", func(t *testing.T) {
		// The client asks for zlib compression; the sidecar relays it to the
		// database, which compresses the session as it would directly.
		out, err := mysqlCLI(t, addr, "app", "shop", "--compress", "-e",
			"SHOW SESSION STATUS LIKE 'Compression'; SELECT COUNT(*), SUM(LENGTH(REPEAT(name, 10))) FROM seq_1_to_50000 JOIN (SELECT 'abcdefghij' AS name) n")
		if err != nil || out != "Compression\tON\n50000\t5000000" {
			t.Fatalf("%v: %q", err, out)
		}
		out, err = mysqlCLI(t, addr, "app", "shop", "-e", "SHOW SESSION STATUS LIKE 'Compression'")
		if err != nil || out != "Compression\tOFF" {
			t.Fatalf("without --compress: %v: %q", err, out)
		}
	})
	t.Run("prepared statements", func(t *testing.T) {
		conn, err := client.Connect(addr, "app", "", "shop")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stmt, err := conn.Prepare("SELECT name FROM items WHERE id = ?")
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		for i := 1; i <= 100; i++ {
			r, err := stmt.Execute(i)
			if err != nil || r.RowNumber() != 1 {
				t.Fatalf("row %d: %v", i, err)
			}
			v, _ := r.GetString(0, 0)
			if len(v) != 300 {
				t.Fatalf("row %d: %d bytes", i, len(v))
			}
		}
	})
	t.Run("kill query", func(t *testing.T) {
		conn, err := client.Connect(addr, "app", "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		id := conn.GetConnectionID()
		start := time.Now()
		done := sleepQuery(conn)
		time.Sleep(500 * time.Millisecond)
		// As the mysql client does on Ctrl-C: KILL QUERY on a new connection,
		// with the id from the greeting.
		if out, err := mysqlCLI(t, addr, "app", "-e", "KILL QUERY "+itoa(int(id))); err != nil {
			t.Fatalf("KILL QUERY %d: %v %s", id, err, out)
		}
		select {
		case got := <-done:
			// MySQL's SLEEP returns 1 when interrupted; MariaDB's fails with 1317.
			if got != "1" && !strings.Contains(got, "ERROR 1317") {
				t.Fatalf("interrupted query returned %q", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("KILL QUERY did not interrupt the query")
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("took %s", took)
		}
	})
	t.Run("denied user", func(t *testing.T) {
		out, err := mysqlCLI(t, addr, "intruder", "-e", "SELECT 1")
		if err == nil || !strings.Contains(out, "ERROR 1045 (28000)") || !strings.Contains(out, "rdsgate: database user 'intruder' may not connect to my (allowed: app, other)") {
			t.Fatalf("%v: %s", err, out)
		}
	})
}

// sleepQuery runs SELECT SLEEP(30) and says how it ended: its result (1
// when interrupted by KILL QUERY) or its error.
func sleepQuery(conn *client.Conn) <-chan string {
	done := make(chan string, 1)
	go func() {
		r, err := conn.Execute("SELECT SLEEP(30)")
		if err != nil {
			done <- err.Error()
			return
		}
		v, _ := r.GetInt(0, 0)
		done <- itoa(int(v))
	}()
	return done
}

func TestMySQLTokenRefusedAndBackendGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) {
		c.Databases = append(c.Databases, wrongRegion("my-wrong-region", ProtocolMySQL, e.myEmu.Endpoint))
	})
	out, err := mysqlCLI(t, e.srv.Addr("my-wrong-region"), "app", "-e", "SELECT 1")
	if err == nil || !strings.Contains(out, "Access denied for user 'app'") {
		t.Fatalf("bad token: %v %s", err, out)
	}
	if !strings.Contains(e.logs.String(), "rdsgate db-user-sql") {
		t.Fatal("the refusal was not logged with what to check")
	}
	conn, err := client.Connect(e.srv.Addr("my"), "app", "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Execute("SELECT SLEEP(20)")
		errc <- err
	}()
	time.Sleep(500 * time.Millisecond)
	e.myEmu.DropSessions()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the query succeeded although the database went away")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not told that the database went away")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for e.srv.Active() != 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.srv.Active(); n != 0 {
		t.Fatalf("%d sessions left open", n)
	}
}
