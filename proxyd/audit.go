package proxyd

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// AuditEvent is one line of the audit trail: a session's start or end, or
// a denied attempt. It never holds a token, a password or a key.
type AuditEvent struct {
	Time time.Time `json:"time"`
	// Event: session_start, session_end, denied (a login, or a change of
	// database in a session), db_change (a MySQL session's USE or
	// COM_INIT_DB the RBAC allowed), refused (a command the gateway does not
	// let through: COM_CHANGE_USER, a KILL it cannot translate).
	Event string `json:"event"`
	// Replica is the proxy that wrote it (replica, or the host's name):
	// behind a load balancer, which of the fleet served the session.
	Replica  string `json:"replica,omitempty"`
	Session  uint32 `json:"session"`
	Identity string `json:"identity,omitempty"` // gateway: certificate subject or IAM ARN
	Database string `json:"database,omitempty"`
	Protocol string `json:"protocol"`
	DBUser   string `json:"db_user,omitempty"`
	DBName   string `json:"db_name,omitempty"`
	Client   string `json:"client"`
	// Result: ok for a session; for a denial, what denied it: rbac,
	// db_user, identity, no_identity, routing, database_refused.
	Result string `json:"result"`
	// Reason says why, for denials (the message the client saw).
	Reason        string  `json:"reason,omitempty"`
	Rule          string  `json:"rule,omitempty"`
	BytesToDB     int64   `json:"bytes_to_database,omitempty"`
	BytesToClient int64   `json:"bytes_to_client,omitempty"`
	Seconds       float64 `json:"duration_seconds,omitempty"`
}

// auditLog writes events as JSON lines; nil writes nothing.
type auditLog struct {
	mu      sync.Mutex
	w       io.Writer
	f       *os.File
	replica string
}

func openAudit(path, replica string) (*auditLog, error) {
	a := &auditLog{replica: replica}
	return a, a.reopen(path)
}

// reopen (re)opens the audit trail at path: after logrotate moved the
// file (SIGHUP), or when a reload names another one. The old file is closed
// once the new one is open; on error the old one stays.
func (a *auditLog) reopen(path string) error {
	var w io.Writer
	var f *os.File
	switch path {
	case "":
	case "-":
		w = os.Stdout
	default:
		var err error
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640); err != nil {
			return fmt.Errorf("%w: audit_log: %v", ErrConfig, err)
		}
		w = f
	}
	a.mu.Lock()
	old := a.f
	a.w, a.f = w, f
	a.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (a *auditLog) write(e AuditEvent) {
	if a == nil {
		return
	}
	a.mu.Lock()
	on := a.w != nil
	a.mu.Unlock()
	if !on {
		return
	}
	e.Time = e.Time.UTC()
	e.Replica = a.replica
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w != nil {
		_, _ = a.w.Write(append([]byte(Redact(string(line))), '\n'))
	}
}

func (a *auditLog) close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != nil {
		_ = a.f.Close()
	}
	a.w, a.f = nil, nil
}

// auditEvent fills in what the session knows.
func (s *session) auditEvent(event, result string) AuditEvent {
	e := AuditEvent{Time: time.Now(), Event: event, Session: s.id, Identity: s.identity, Protocol: s.proto,
		DBUser: sanitize(s.user), DBName: sanitize(s.dbName), Client: s.client.RemoteAddr().String(), Result: result}
	if s.db != nil {
		e.Database = s.db.Name
	}
	return e
}

// auditSession records something the gateway refused inside a session.
func (s *session) auditSession(event, result, reason string) {
	e := s.auditEvent(event, result)
	e.Reason = reason
	s.srv.audit.write(e)
}

// auditDenied records a denied attempt.
func (s *session) auditDenied(result, reason, rule string) {
	e := s.auditEvent("denied", result)
	e.Reason, e.Rule = reason, rule
	s.srv.audit.write(e)
}

// auditStart records a session's start and returns the function that
// records its end.
func (s *session) auditStart() func() {
	s.srv.audit.write(s.auditEvent("session_start", "ok"))
	return func() {
		e := s.auditEvent("session_end", "ok")
		e.BytesToDB, e.BytesToClient = s.bytesToDB.Load(), s.bytesToClient.Load()
		e.Seconds = time.Since(s.started).Round(time.Millisecond).Seconds()
		s.srv.audit.write(e)
	}
}
