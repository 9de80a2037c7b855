package proxyd

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func TestPGTracker(t *testing.T) {
	t.Parallel()
	query := msg('Q', "select 1\x00")
	answer := append(append(msg('T', "rowdesc"), msg('D', "row")...), append(msg('C', "SELECT 1\x00"), msg('Z', "I")...)...)
	// Every way of splitting the streams gives the same answer.
	for split := 1; split <= len(answer); split++ {
		tr := newPGTracker()
		if i := tr.fromClient(query); i != -1 || tr.idle() {
			t.Fatalf("after a query: terminate at %d, idle %v", i, tr.idle())
		}
		for i := 0; i < len(answer); i += split {
			tr.fromServer(answer[i:min(i+split, len(answer))])
		}
		if !tr.idle() {
			t.Fatalf("split %d: not idle after ReadyForQuery", split)
		}
		stream := append(msg('P', "stmt"), msg('X', "")...)
		if i := tr.fromClient(stream); i != len(msg('P', "stmt")) {
			t.Fatalf("terminate found at %d", i)
		}
		if tr.idle() {
			t.Fatal("idle although a Parse was sent after the last ReadyForQuery")
		}
	}
	tr := newPGTracker()
	tr.fromClient(msg('Q', "begin\x00"))
	tr.fromServer(append(msg('C', "BEGIN\x00"), msg('Z', "T")...))
	if tr.idle() {
		t.Fatal("idle inside a transaction")
	}
	// Two queries in flight, one answered: not idle.
	tr = newPGTracker()
	tr.fromClient(append(msg('Q', "a\x00"), msg('Q', "b\x00")...))
	tr.fromServer(msg('Z', "I"))
	if tr.idle() {
		t.Fatal("idle with a query still in flight")
	}
	tr.fromServer(msg('Z', "I"))
	if !tr.idle() {
		t.Fatal("not idle after both answers")
	}
}

func TestReuseConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(e *env, c *Config) {
		c.Databases[0].ReuseConnections = true
		c.ReuseIdleTimeout = Duration(2 * time.Second)
	})
	dsn := e.pgDSN("pg", "app", "postgres")
	pid := func(args ...string) string {
		t.Helper()
		out, err := psql(t, dsn, append(args, "-c", "select pg_backend_pid()")...)
		if err != nil {
			t.Fatal(err, out)
		}
		return out[strings.LastIndexByte(out, '\n')+1:]
	}
	first := pid("-c", "set work_mem = '64MB'", "-c", "create temp table scratch(x int)", "-c", "prepare p as select 1")
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.pool.size() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := psql(t, dsn, "-c", "select pg_backend_pid()", "-c", "show work_mem", "-c", "select count(*) from pg_prepared_statements",
		"-c", "select count(*) from pg_class where relname = 'scratch'")
	if err != nil {
		t.Fatal(err, out)
	}
	if want := first + "\n4MB\n0\n0"; out != want {
		t.Fatalf("second client saw %q, want the same server connection, reset: %q", out, want)
	}

	t.Run("other startup parameters", func(t *testing.T) {
		other, err := psql(t, dsn+" application_name=another", "-c", "select pg_backend_pid()")
		if err != nil || other == first {
			t.Fatalf("%v: %s", err, other)
		}
	})
	t.Run("left inside a transaction", func(t *testing.T) {
		p := pid("-c", "begin")
		if next := pid(); next == p {
			t.Fatal("a connection left inside a transaction was reused")
		}
	})
	t.Run("query still in flight", func(t *testing.T) {
		c, err := net.Dial("tcp", e.srv.Addr("pg"))
		if err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(c, c)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "app", "database": "postgres"}})
		_ = fe.Flush()
		readUntilReady := func() string {
			value := ""
			for {
				m, err := fe.Receive()
				if err != nil {
					t.Fatal(err)
				}
				if d, ok := m.(*pgproto3.DataRow); ok {
					value = string(d.Values[0])
				}
				if _, ok := m.(*pgproto3.ReadyForQuery); ok {
					return value
				}
			}
		}
		readUntilReady()
		fe.Send(&pgproto3.Query{String: "select pg_backend_pid()"})
		_ = fe.Flush()
		busy := readUntilReady()
		// Query and Terminate in one write, without waiting for the answer.
		_, _ = c.Write(append(msg('Q', "select pg_sleep(0.3)\x00"), msg('X', "")...))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 1024))
		c.Close()
		time.Sleep(500 * time.Millisecond)
		for range 3 {
			if p := pid(); p == busy {
				t.Fatalf("the server connection %s, left with a query in flight, was handed on", busy)
			}
		}
	})
	t.Run("cancel on a kept connection", func(t *testing.T) {
		ctx := context.Background()
		_ = pid()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		go func() {
			time.Sleep(400 * time.Millisecond)
			_ = conn.PgConn().CancelRequest(ctx)
		}()
		_, err = conn.Exec(ctx, "select pg_sleep(30)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("cancel: %v", err)
		}
	})
	t.Run("idle expiry and a server that goes away", func(t *testing.T) {
		p := pid()
		time.Sleep(3500 * time.Millisecond)
		if next := pid(); next == p {
			t.Fatal("an expired idle connection was reused")
		}
		kept := pid()
		e.pgEmu.DropSessions()
		time.Sleep(300 * time.Millisecond)
		if next := pid(); next == kept {
			t.Fatal("a connection the server closed was handed on")
		}
	})
	_, metrics := get(t, "http://"+e.srv.HealthAddr()+"/metrics")
	if !strings.Contains(metrics, `rdsgate_proxy_reused_server_connections_total{database="pg"}`) {
		t.Fatal("no reuse metric")
	}
}
