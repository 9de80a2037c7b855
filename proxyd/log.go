package proxyd

import (
	"context"
	"log/slog"
	"regexp"
	"strconv"
)

// secretPatterns match what must never reach a log line: IAM tokens and
// presigned URLs, AWS secret keys and session tokens.
var secretPatterns = []*regexp.Regexp{
	// A gateway identity token (a presigned STS request, base64), whole or
	// cut short, anywhere: as a password, a user name, a database name.
	regexp.MustCompile(`(?i)rdsgate-iam-v1(\.|%2E)[A-Za-z0-9_\-%]*`),
	// Presigned requests (RDS IAM tokens, STS), also URL-encoded once or
	// twice, as they are inside other URLs.
	regexp.MustCompile(`(?i)[^\s"'<>]*X-Amz-(Signature|Security-Token|Credential)(=|%3D|%253D)[^\s"'<>]*`),
	regexp.MustCompile(`(?i)(aws_?secret_?access_?key|secret_?key|session_?token|password)["']?\s*[=:]\s*["']?[^\s"',]+`),
}

// Redact replaces secrets in s.
func Redact(s string) string {
	for _, re := range secretPatterns {
		s = re.ReplaceAllString(s, "[REDACTED]")
	}
	return s
}

// redactingHandler is a slog handler that redacts every string it logs, so
// an error message carrying a token (from a server or a library) cannot leak
// it.
type redactingHandler struct{ slog.Handler }

// NewRedactingHandler wraps a handler.
func NewRedactingHandler(h slog.Handler) slog.Handler { return redactingHandler{h} }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, Redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(a)
	}
	return redactingHandler{h.Handler.WithAttrs(clean)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}

// lazyAttrs adds attributes only to the records it handles. A session makes
// its logger for every line it might log, and adding the attributes up
// front (redacted, then encoded) cost about a twentieth of a new
// connection's CPU, for lines whose level is off.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (l lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.h.WithAttrs(l.attrs).Handle(ctx, r)
}

func (l lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithAttrs(attrs)
}

func (l lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}

func redactAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Redact(a.Value.String()))
	case slog.KindGroup:
		attrs := a.Value.Group()
		clean := make([]any, len(attrs))
		for i, g := range attrs {
			clean[i] = redactAttr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, Redact(err.Error()))
		}
	}
	return a
}

// count is n with its noun, singular for one ("1 rule", "2 rules").
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
