//go:build linux

package proxyd

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
)

// sessionGoroutines counts the goroutines running a session's code.
func sessionGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	var held []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("proxyd.(*session)")) {
			count++
			held = append(held, string(g))
		}
	}
	return count, strings.Join(held, "\n\n")
}

// TestIdleSessionsHoldNoGoroutine: a session an event loop relays holds no
// goroutine while it is idle (nor the stack its login grew: that was most
// of an idle client's memory), and its end work still runs when it ends:
// it is logged as ended, its cancel key is forgotten, and the server
// counts no open connection.
func TestIdleSessionsHoldNoGoroutine(t *testing.T) {
	// Not parallel: the goroutines of other tests' sessions would count.
	e := newEnv(t, nil)
	ctx := context.Background()
	before, _ := sessionGoroutines()
	const n = 10
	var pgs []*pgx.Conn
	var mys []*client.Conn
	for range n {
		pgs = append(pgs, e.pgConn(t, "pg"))
		c, err := client.Connect(e.srv.Addr("my"), "app", "", "shop")
		if err != nil {
			t.Fatal(err)
		}
		mys = append(mys, c)
	}
	for i := range n {
		if err := pgs[i].Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := mys[i].Ping(); err != nil {
			t.Fatal(err)
		}
	}
	if held, stacks := sessionGoroutines(); held-before >= n {
		t.Fatalf("%d goroutines run session code for %d idle sessions (%d before), want none held per session:\n%s", held, 2*n, before, stacks)
	}
	for i := range n {
		_ = pgs[i].Close(ctx)
		_ = mys[i].Close()
	}
	waitFor(t, "every session's end", func() bool {
		return strings.Count(e.logs.String(), `"msg":"session ended"`) == 2*n && e.srv.active.Load() == 0
	})
	e.srv.cancels.mu.Lock()
	left := len(e.srv.cancels.m)
	e.srv.cancels.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d cancel keys kept after every session ended", left)
	}
}
