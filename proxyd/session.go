package proxyd

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var syscallEADDRINUSE = syscall.EADDRINUSE

// session is one client connection and, once logged in, its database
// connection.
type session struct {
	srv      *Server
	client   net.Conn
	backend  net.Conn
	db       *Database // nil in gateway mode until routed
	proto    string
	id       uint32
	started  time.Time
	user     string
	dbName   string
	identity string   // gateway: the client's identity (certificate subject or IAM ARN), for logs
	ident    Identity // gateway: the client's identity, for the RBAC
	// Bytes relayed each way, for the audit trail.
	bytesToDB, bytesToClient atomic.Int64
	closed                   atomic.Bool
	source                   string      // the client's address, as pending logins are counted
	pendingHeld              atomic.Bool // holds a place among pending logins
	promoted                 atomic.Bool // holds a place among max_connections
	loopPair                 *pair       // set while an event loop relays the session
	mu                       sync.Mutex
	ends                     []func() // run when the session ends, last added first
}

// atEnd adds work for the end of the session, as defer would, but it runs
// on whichever goroutine ends the session: the session's own, or, once an
// event loop relays it, one the loop starts when the relay is over. So a
// session relayed by a loop holds no goroutine (nor the stack its login
// grew) while it is idle.
func (s *session) atEnd(f func()) {
	s.mu.Lock()
	s.ends = append(s.ends, f)
	s.mu.Unlock()
}

// inLoop reports whether an event loop took the session; the loop then
// runs its end work when the relay is over.
func (s *session) inLoop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loopPair != nil
}

// end runs the session's end work, once.
func (s *session) end() {
	s.mu.Lock()
	ends := s.ends
	s.ends = nil
	s.mu.Unlock()
	for i := len(ends) - 1; i >= 0; i-- {
		ends[i]()
	}
}

func (s *session) run() {
	s.atEnd(s.close)
	defer func() {
		// A bug in one session must not end every other one.
		if r := recover(); r != nil {
			s.count("internal_error")
			s.logger().Error("session panicked; closing it", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	switch s.proto {
	case ProtocolPostgres:
		s.runPostgres()
	case ProtocolMySQL:
		s.runMySQL()
	}
}

func (s *session) close() {
	if s.closed.Swap(true) {
		return
	}
	s.mu.Lock()
	b, p := s.backend, s.loopPair
	s.mu.Unlock()
	if p != nil {
		// An event loop owns the sockets: only its thread may write (a TLS
		// close would send an alert) or close them.
		p.close()
		return
	}
	s.client.Close()
	if b != nil {
		b.Close()
	}
}

func (s *session) dbLabel() string {
	if s.db != nil {
		return s.db.Name
	}
	return "gateway"
}

func (s *session) describe() string {
	return fmt.Sprintf("#%d %s user=%s from %s for %s", s.id, s.dbLabel(), s.user, s.client.RemoteAddr(), time.Since(s.started).Round(time.Second))
}

func (s *session) logger() *slog.Logger {
	attrs := []slog.Attr{slog.Any("conn", s.id), slog.String("database", s.dbLabel()), slog.String("client", s.client.RemoteAddr().String())}
	if s.user != "" {
		attrs = append(attrs, slog.String("db_user", s.user))
	}
	if s.identity != "" {
		attrs = append(attrs, slog.String("identity", s.identity))
	}
	return slog.New(lazyAttrs{h: s.srv.log.Handler(), attrs: attrs})
}

func (s *session) count(result string) {
	s.srv.metrics.connections.WithLabelValues(s.dbLabel(), result).Inc()
}

// promote moves a client that has logged in (or, on a sidecar listener,
// said who it is) from the pending logins to the sessions max_connections
// bounds. It returns false, having told the client, when there is no room.
func (s *session) promote(conn net.Conn, seq byte) bool {
	s.leavePending()
	if s.srv.established.Add(1) > int64(s.srv.config().MaxConnections) {
		s.srv.established.Add(-1)
		s.count("refused")
		msg := fmt.Sprintf("rdsgate: too many connections (max_connections is %d)", s.srv.config().MaxConnections)
		switch s.proto {
		case ProtocolPostgres:
			_, _ = conn.Write(pgError("FATAL", "53300", msg, ""))
		case ProtocolMySQL:
			_ = writeMySQLPacket(conn, seq, mysqlErr(1040, "08004", msg))
		}
		s.srv.junk.log(s.srv.log, "connection refused: at max_connections", "client", s.source, "max_connections", s.srv.config().MaxConnections)
		return false
	}
	s.promoted.Store(true)
	return true
}

// clientTLS is the TLS a client of this listener may ask for: the
// gateway's (with client certificates), or on a sidecar's TCP listener the
// configured client_tls_cert or the certificate the proxy made at start;
// nil on a unix socket.
func (s *session) clientTLS() *tls.Config {
	if s.db == nil {
		return s.srv.tlsForClients()
	}
	if s.client.LocalAddr().Network() == "unix" {
		return nil
	}
	return s.srv.current.Load().sidecarTLS
}

// tlsFailed records a client whose TLS handshake failed (a certificate
// the client CA did not sign, an expired one, a port scanner): in the
// audit trail, and in the log at most once a second.
func (s *session) tlsFailed(err error) {
	s.auditDenied("tls", "TLS handshake failed: "+sanitize(err.Error()), "")
	s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), "tls").Inc()
	s.srv.junk.log(s.srv.log, "client TLS handshake failed", "client", s.source, "error", err.Error())
}

func (s *session) leavePending() {
	if s.pendingHeld.Swap(false) {
		s.srv.pending.leave(s.source)
		s.srv.metrics.pending.Dec()
	}
}

// finish gives back what the session held.
func (s *session) finish() {
	s.leavePending()
	if s.promoted.Swap(false) {
		s.srv.established.Add(-1)
	}
}

// dial connects to the database over TCP, with the configured timeout and a
// message that says what to check when it fails.
func (s *session) dial(ctx context.Context) (net.Conn, error) {
	timeout := time.Duration(s.srv.config().DialTimeout)
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.db.dialAddress())
	if err != nil {
		return nil, dialError(s.db, timeout, err)
	}
	c := newSwitchConn(raw)
	s.mu.Lock()
	s.backend = c
	s.mu.Unlock()
	if s.closed.Load() {
		c.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

// dialAddress is where connections to the database go.
func (db *Database) dialAddress() string {
	if db.Address != "" {
		return db.Address
	}
	return db.Endpoint
}

// dialError explains a failed connection to a database.
func dialError(db *Database, timeout time.Duration, err error) error {
	host, port, _ := net.SplitHostPort(db.dialAddress())
	var dnsErr *net.DNSError
	var hint string
	switch {
	case errors.As(err, &dnsErr):
		hint = fmt.Sprintf("the host %s does not resolve: check the endpoint (aws rds describe-db-instances); private endpoints resolve only inside their VPC", host)
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = fmt.Sprintf("nothing accepts connections on %s: check the port and that the database is available", db.dialAddress())
	case isTimeout(err):
		hint = fmt.Sprintf("no answer within %s: check that the database's security group allows port %s from this proxy, that `nc -zv %s %s` connects from this host, and the routing to its VPC", timeout, port, host, port)
	default:
		hint = fmt.Sprintf("check that `nc -zv %s %s` connects from this host", host, port)
	}
	return &backendError{msg: fmt.Sprintf("cannot connect to %s at %s: %v; %s", db.Name, db.Endpoint, err, hint)}
}

// silentBackend says what happened when a database did not answer: a
// timeout (it is slow or overloaded, or the network drops packets) is not
// a close (it refused the connection, or a middlebox cut it).
func silentBackend(db, what string, timeout time.Duration, err error) string {
	if isTimeout(err) {
		return fmt.Sprintf("%s did not send %s within %s (dial_timeout): the database is overloaded or the network is dropping packets; "+
			"check its CPU and connection count, and raise dial_timeout if it is merely slow", db, what, timeout)
	}
	return fmt.Sprintf("%s closed the connection instead of sending %s: %v", db, what, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// backendError is a failure on the database side, with a message that is
// safe to show the client.
type backendError struct {
	msg string
	// signing: the proxy could not get the credentials to sign with (a
	// role it could not assume), so another principal may still do.
	signing bool
}

func (e *backendError) Error() string { return e.msg }

// startTLS upgrades a database connection, verifying the server against the
// CA bundle and the endpoint's host name (verify-full).
func (s *session) startTLS(raw net.Conn) (*tls.Conn, error) {
	name := s.db.TLSServerName
	if name == "" {
		name = s.db.host()
	}
	_ = raw.SetDeadline(time.Now().Add(time.Duration(s.srv.config().DialTimeout)))
	tc, err := s.srv.databaseTLS().handshake(raw, name)
	_ = raw.SetDeadline(time.Time{})
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		switch {
		case errors.As(err, &unknown):
			return nil, &backendError{msg: fmt.Sprintf("the certificate of %s does not verify against ca_bundle %s: use the RDS CA bundle of its region (%v); %s", s.db.Name, s.srv.config().CABundle, err, caBundleHint(s.srv.config().CABundle))}
		case errors.As(err, &host):
			return nil, &backendError{msg: fmt.Sprintf("the certificate of %s is not for %s: connect to the endpoint RDS gives, or set tls_server_name (%v)", s.db.Name, name, err)}
		}
		return nil, &backendError{msg: fmt.Sprintf("TLS with %s failed: %v", s.db.Name, err)}
	}
	s.mu.Lock()
	s.backend = tc
	s.mu.Unlock()
	return tc, nil
}

// refusedTokenHint says what to check when a database refuses the token.
func refusedTokenHint(db *Database, user string) string {
	return fmt.Sprintf("check that IAM database authentication is enabled on %s (rdsgate enable-iam-auth), that %s was created for IAM (rdsgate db-user-sql), "+
		"and that the proxy's role may rds-db:connect to it as %s (rdsgate doctor, rdsgate drift)", db.Name, user, user)
}

// cancelRegistry maps the cancel keys the proxy hands to PostgreSQL clients
// to the database's own. A client sees the server's real backend PID (so
// pg_backend_pid(), pg_terminate_backend(pid) and notifications mean what
// they say) with a secret the proxy makes: only a client the proxy gave
// the key to can cancel, and only its own query.
type cancelRegistry struct {
	mu sync.Mutex
	m  map[string]cancelTarget // backend PID and the proxy's secret
}

type cancelTarget struct {
	db     *Database
	pid    uint32
	secret []byte
}

func cancelKey(pid uint32, secret []byte) string {
	return string(binary.BigEndian.AppendUint32(nil, pid)) + string(secret)
}

// add gives the client of target a key: the backend's PID and a new secret
// of secretLen bytes (4 for protocol 3.0, up to 256 for 3.2).
func (r *cancelRegistry) add(t cancelTarget, secretLen int) (pid uint32, secret []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]cancelTarget{}
	}
	for {
		secret = make([]byte, secretLen)
		_, _ = rand.Read(secret)
		// Two servers behind the proxy may have a backend with the same
		// PID; the secret keeps their keys apart.
		if k := cancelKey(t.pid, secret); r.m[k].db == nil {
			r.m[k] = t
			return t.pid, secret
		}
	}
}

func (r *cancelRegistry) remove(pid uint32, secret []byte) {
	r.mu.Lock()
	delete(r.m, cancelKey(pid, secret))
	r.mu.Unlock()
}

func (r *cancelRegistry) lookup(pid uint32, secret []byte) (cancelTarget, bool) {
	if len(secret) < 4 || len(secret) > 256 {
		return cancelTarget{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.m[cancelKey(pid, secret)]
	return t, ok
}

// sanitize keeps a client-provided string printable, short and free of
// secrets (a client that sends its token as a user name must not find it
// in a log line, or in the error it prints) for logs and messages.
func sanitize(s string) string {
	s = Redact(s)
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// established records a session that has logged in: counted, active, logged
// with how long the login took (and attrs), and audited. The function it
// returns ends the session's records; defer it.
func (s *session) established(start time.Time, attrs ...any) func() {
	s.count("ok")
	active := s.srv.metrics.active.WithLabelValues(s.db.Name)
	active.Inc()
	s.logger().Info("session started", slices.Concat([]any{"db_name", sanitize(s.dbName)}, attrs, []any{"login_ms", time.Since(start).Milliseconds()})...)
	auditEnd := s.auditStart()
	return func() {
		s.logger().Info("session ended", "seconds", time.Since(s.started).Round(time.Millisecond).Seconds())
		auditEnd()
		active.Dec()
	}
}

// unread is a copy of what the reader holds beyond the login: bytes the
// relay must pass on first.
func unread(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}
