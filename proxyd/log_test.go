package proxyd

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
)

type countingHandler struct {
	slog.Handler
	withAttrs int
}

func (c *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c.withAttrs++
	return c.Handler.WithAttrs(attrs)
}

// A session's logger adds its attributes (redacted, encoded) only to lines
// that are written, in the order they always had, and still redacted.
func TestSessionLoggerPaysOnlyForLinesItWrites(t *testing.T) {
	var buf bytes.Buffer
	counter := &countingHandler{Handler: slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := &session{srv: &Server{log: slog.New(NewRedactingHandler(counter))}, client: newSwitchConn(a), id: 7,
		user: "rdsgate-iam-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_abcdef0123"}

	s.logger().Info("below the level", "n", 1)
	if counter.withAttrs != 0 || buf.Len() != 0 {
		t.Fatalf("a line below the level added attributes %d times and wrote %q", counter.withAttrs, buf.String())
	}
	s.logger().Warn("written", "n", 2, "error", "session_token=IQoJb3JpZ2lu")
	want := `"msg":"written","conn":7,"database":"gateway","client":"pipe","db_user":"[REDACTED]","n":2,"error":"[REDACTED]"}`
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("logged %s\nwant it to end %s", buf.String(), want)
	}
}
