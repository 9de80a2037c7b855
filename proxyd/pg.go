package proxyd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// PostgreSQL startup-phase request codes.
const (
	pgSSLRequest    = 80877103
	pgGSSENCRequest = 80877104
	pgCancelRequest = 80877102
	pgProtocol30    = 196608
	pgProtocol32    = 196610
	// maxStartupPacket bounds what a client may send before logging in.
	maxStartupPacket = 10000
	// maxLoginMessage bounds a database message during the login.
	maxLoginMessage = 1 << 20
	// loginTimeout bounds how long a client may take to log in.
	loginTimeout = 30 * time.Second
)

// readStartup reads one startup-phase packet: a length, then the body. It
// reads exactly the packet, so nothing a client sends after it is lost.
func readStartup(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > maxStartupPacket {
		return nil, fmt.Errorf("invalid startup packet length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// StartupRequest is a parsed startup-phase packet.
type StartupRequest struct {
	Code       uint32
	Parameters map[string]string // StartupMessage
	CancelPID  uint32            // CancelRequest
	CancelKey  []byte
}

// ParseStartup decodes a startup-phase packet body (after the length).
func ParseStartup(body []byte) (*StartupRequest, error) {
	if len(body) < 4 {
		return nil, errors.New("startup packet too short")
	}
	r := &StartupRequest{Code: binary.BigEndian.Uint32(body)}
	switch r.Code {
	case pgSSLRequest, pgGSSENCRequest:
		if len(body) != 4 {
			return nil, errors.New("malformed encryption request")
		}
	case pgCancelRequest:
		var cr pgproto3.CancelRequest
		if err := cr.Decode(body); err != nil {
			return nil, err
		}
		r.CancelPID, r.CancelKey = cr.ProcessID, cr.SecretKey
	case pgProtocol30, pgProtocol32:
		var sm pgproto3.StartupMessage
		if err := sm.Decode(body); err != nil {
			return nil, err
		}
		if sm.Parameters["user"] == "" {
			return nil, errors.New("no user in the startup message")
		}
		r.Parameters = sm.Parameters
	default:
		return nil, fmt.Errorf("unsupported frontend protocol %d.%d: rdsgate speaks 3.0 and 3.2", r.Code>>16, r.Code&0xffff)
	}
	return r, nil
}

// pgError encodes an ErrorResponse.
func pgError(severity, code, msg, hint string) []byte {
	b, _ := (&pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg, Hint: hint}).Encode(nil)
	return b
}

// readMessage reads one typed message from the database during the login.
func readMessage(br *bufio.Reader) (typ byte, body, raw []byte, err error) {
	hdr, err := br.Peek(5)
	if err != nil {
		return 0, nil, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > maxLoginMessage {
		return 0, nil, nil, fmt.Errorf("invalid message length %d", n)
	}
	raw = make([]byte, n+1)
	if _, err := io.ReadFull(br, raw); err != nil {
		return 0, nil, nil, err
	}
	return raw[0], raw[5:], raw, nil
}

func (s *session) runPostgres() {
	var conn net.Conn = s.client
	_ = conn.SetDeadline(time.Now().Add(time.Duration(s.srv.config().HandshakeTimeout)))
	gateway := s.db == nil
	encrypted := false
	var req *StartupRequest
	for req == nil {
		body, err := readStartup(conn)
		if err != nil {
			s.count("client_error")
			return
		}
		r, err := ParseStartup(body)
		if err != nil {
			s.count("client_error")
			_, _ = conn.Write(pgError("FATAL", "08P01", "rdsgate: "+err.Error(), ""))
			return
		}
		switch r.Code {
		case pgSSLRequest:
			conf := s.clientTLS()
			if conf == nil || encrypted {
				// A unix socket: libpq never asks there, others take N.
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(conn, conf)
			if err := tc.Handshake(); err != nil {
				s.count("client_error")
				s.tlsFailed(err)
				return
			}
			conn, encrypted = tc, true
		case pgGSSENCRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
		case pgCancelRequest:
			s.cancelPostgres(r.CancelPID, r.CancelKey)
			return
		default:
			req = r
		}
	}
	params := req.Parameters
	s.user = params["user"]
	s.dbName = params["database"]
	if s.dbName == "" {
		s.dbName = s.user
	}
	rule := ""
	deny := func(reason, msg, hint string) {
		s.count("denied")
		s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), reason).Inc()
		s.logger().Warn("connection denied", "reason", reason, "detail", msg, "db_name", sanitize(s.dbName))
		s.auditDenied(reason, msg, rule)
		if msg != "" {
			_, _ = conn.Write(pgError("FATAL", "28000", msg, hint))
		}
	}
	if gateway {
		target, dbName, err := s.route(conn, s.dbName)
		if err != nil {
			deny("routing", "rdsgate: "+err.Error(), "")
			return
		}
		s.db, s.dbName = target, dbName
		if s.db.Protocol != ProtocolPostgres {
			deny("routing", fmt.Sprintf("rdsgate: %s is a %s database; connect to the gateway's %s listener", s.db.Name, s.db.Protocol, s.db.Protocol), "")
			return
		}
		ids, reason, msg := s.clientIdentity(conn, func() (string, error) { return askPGPassword(conn) })
		if ids.IsZero() {
			deny(reason, msg, "")
			return
		}
		var denied string
		if reason, denied, rule = s.authorize(ids); denied != "" {
			deny(reason, denied, "")
			return
		}
	} else if !s.db.allowsUser(s.user) {
		deny("db_user", fmt.Sprintf("rdsgate: database user %q may not connect to %s", sanitize(s.user), s.db.Name),
			fmt.Sprintf("allowed users: %s", strings.Join(s.db.DBUsers, ", ")))
		return
	}
	if !s.promote(conn, 0) {
		return
	}
	_ = conn.SetDeadline(time.Now().Add(loginTimeout))

	var reuse *reuseInfo
	if s.db.ReuseConnections && !s.srv.config().NoEventLoop {
		fwd := make(map[string]string, len(params))
		for k, v := range params {
			fwd[k] = v
		}
		fwd["database"] = s.dbName
		// A kept connection serves clients of the same protocol version.
		fwd["\x00protocol"] = strconv.FormatUint(uint64(req.Code), 10)
		key := reuseKey(s.db, fwd)
		if pc := s.srv.pool.take(key, time.Now()); pc != nil {
			s.srv.metrics.idle.Dec()
			_ = conn.SetDeadline(time.Time{})
			s.count("ok")
			s.srv.metrics.reused.WithLabelValues(s.db.Name).Inc()
			s.srv.metrics.active.WithLabelValues(s.db.Name).Inc()
			s.atEnd(s.srv.metrics.active.WithLabelValues(s.db.Name).Dec)
			s.logger().Info("session started on a kept server connection", "db_name", sanitize(s.dbName))
			s.atEnd(s.auditStart())
			s.relayReused(conn, pc)
			return
		}
		reuse = &reuseInfo{key: key}
	}
	start := time.Now()
	backend, br, greeting, err := s.loginPostgres(req, params, reuse)
	if err != nil {
		var be *backendError
		var pr *pgRefusal
		switch {
		case errors.As(err, &pr):
			refused := &pr.ErrorResponse
			s.count("auth_failed")
			s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), "database_refused_token").Inc()
			hint := refused.Hint
			if refused.Code == "28P01" || refused.Code == "28000" {
				hint = refusedTokenHint(s.db, s.user)
			}
			s.logger().Warn("the database refused the login", "code", refused.Code, "error", refused.Message, "hint", hint)
			s.auditDenied("database_refused", refused.Message, "")
			_, _ = conn.Write(pgError("FATAL", refused.Code, refused.Message, hint))
		case errors.As(err, &be):
			s.count("backend_error")
			s.logger().Warn("cannot reach the database", "error", be.msg)
			_, _ = conn.Write(pgError("FATAL", "08001", "rdsgate: "+be.msg, ""))
		default:
			s.count("backend_error")
			s.logger().Warn("login to the database failed", "error", err)
			_, _ = conn.Write(pgError("FATAL", "08001", "rdsgate: "+err.Error(), ""))
		}
		return
	}
	s.srv.metrics.dialSeconds.WithLabelValues(s.db.Name).Observe(time.Since(start).Seconds())
	_ = conn.SetDeadline(time.Time{})
	s.atEnd(s.established(start))
	pending := unread(br)
	if reuse != nil && len(pending) == 0 && s.relayInLoopReusable(conn, backend, nil, greeting, reuse) {
		return
	}
	s.relay(conn, backend, nil, append(greeting, pending...))
}

// askPGPassword asks a client for its password in clear text (over TLS)
// and returns it.
func askPGPassword(conn net.Conn) (string, error) {
	if _, err := conn.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}); err != nil {
		return "", err
	}
	return readPasswordMessage(conn)
}

// readPasswordMessage reads a client's PasswordMessage, exactly (nothing
// after it is consumed), at most 16 KiB.
func readPasswordMessage(r io.Reader) (string, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if hdr[0] != 'p' || n < 5 || n > 16<<10 {
		return "", fmt.Errorf("expected a password message")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return strings.TrimRight(string(body), "\x00"), nil
}

func pgAuthOK() []byte { return []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0} }

func pgKeyData(pid uint32, secret []byte) []byte {
	b, _ := (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret}).Encode(nil)
	return b
}

// loginPostgres connects to the database and logs in with an IAM token,
// signed through the principal that holds the database's permission (see
// Database.FallbackRoleARNs). It returns the connection, its reader (which
// may hold bytes of the session) and what the client must receive:
// AuthenticationOk, the parameters, the proxy's own cancel key and
// ReadyForQuery.
func (s *session) loginPostgres(req *StartupRequest, params map[string]string, reuse *reuseInfo) (net.Conn, *bufio.Reader, []byte, error) {
	var (
		conn     net.Conn
		br       *bufio.Reader
		greeting []byte
	)
	err := s.srv.signers.try(s, func(signer *Database) (err error) {
		conn, br, greeting, err = s.loginPostgresAs(req, params, reuse, signer)
		return err
	})
	return conn, br, greeting, err
}

func (s *session) loginPostgresAs(req *StartupRequest, params map[string]string, reuse *reuseInfo, signer *Database) (net.Conn, *bufio.Reader, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.srv.config().DialTimeout)+5*time.Second)
	defer cancel()
	// RDS takes an IAM token as the password of the client's user;
	// Redshift a temporary password for the user its API names.
	loginUser, password := s.user, ""
	var err error
	if signer.Service == ServiceRDS {
		password, err = s.srv.creds.token(ctx, s.srv.base, signer, s.user)
	} else {
		loginUser, password, err = s.srv.creds.redshiftLogin(ctx, s.srv.base, signer, s.user, s.dbName, s.srv.config().AWSEndpoints)
	}
	if err != nil {
		return nil, nil, nil, &backendError{msg: err.Error(), signing: true}
	}
	raw, err := s.dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	tc, err := s.sslRequest(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	_ = tc.SetDeadline(time.Now().Add(time.Duration(s.srv.config().DialTimeout)))
	defer tc.SetDeadline(time.Time{})
	fwd := make(map[string]string, len(params))
	for k, v := range params {
		fwd[k] = v
	}
	fwd["database"] = s.dbName
	fwd["user"] = loginUser
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: req.Code, Parameters: fwd}).Encode(nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := tc.Write(startup); err != nil {
		return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
	}
	br := bufio.NewReaderSize(tc, 4096)
	ok, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	greeting := ok
	for {
		typ, body, raw, err := readMessage(br)
		if err != nil {
			return nil, nil, nil, &backendError{msg: fmt.Sprintf("%s closed the connection during login: %v", s.db.Name, err)}
		}
		switch typ {
		case 'R':
			if len(body) < 4 {
				return nil, nil, nil, fmt.Errorf("malformed authentication request from %s", s.db.Name)
			}
			switch code := binary.BigEndian.Uint32(body); code {
			case 0: // AuthenticationOk
			case 3: // cleartext password: the token, over TLS
				pw, _ := (&pgproto3.PasswordMessage{Password: password}).Encode(nil)
				if _, err := tc.Write(pw); err != nil {
					return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
				}
			case 5: // md5 with a salt, as Redshift asks
				if signer.Service == ServiceRDS || len(body) < 8 {
					return nil, nil, nil, &backendError{msg: fmt.Sprintf("%s asks %s for an md5 password, not an IAM token: %s", s.db.Name, s.user, refusedTokenHint(s.db, s.user))}
				}
				pw, _ := (&pgproto3.PasswordMessage{Password: pgMD5Password(loginUser, password, body[4:8])}).Encode(nil)
				if _, err := tc.Write(pw); err != nil {
					return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
				}
			default:
				return nil, nil, nil, &backendError{msg: fmt.Sprintf("%s asks %s for a password (authentication method %d), not an IAM token: %s",
					s.db.Name, s.user, code, refusedTokenHint(s.db, s.user))}
			}
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return nil, nil, nil, fmt.Errorf("malformed error from %s", s.db.Name)
			}
			tc.Close() // a login through another principal dials anew
			return nil, nil, nil, &pgRefusal{e}
		case 'K':
			var k pgproto3.BackendKeyData
			if err := k.Decode(body); err != nil {
				return nil, nil, nil, fmt.Errorf("malformed cancel key from %s", s.db.Name)
			}
			if reuse != nil {
				reuse.pid, reuse.secret = k.ProcessID, k.SecretKey
			}
			pid, secret := s.srv.cancels.add(cancelTarget{db: s.db, pid: k.ProcessID, secret: k.SecretKey}, len(k.SecretKey))
			s.atEnd(func() { s.srv.cancels.remove(pid, secret) })
			greeting = append(greeting, pgKeyData(pid, secret)...)
		case 'v':
			// NegotiateProtocolVersion comes before the authentication
			// exchange, as the server sends it; the proxy's
			// AuthenticationOk must not overtake it.
			greeting = append(append([]byte(nil), raw...), greeting...)
			if reuse != nil {
				reuse.negotiate = append([]byte(nil), raw...)
			}
		case 'Z':
			return tc, br, append(greeting, raw...), nil
		default: // ParameterStatus, NoticeResponse, NegotiateProtocolVersion
			greeting = append(greeting, raw...)
			if reuse != nil && typ == 'S' {
				reuse.params = append(reuse.params, raw...)
			}
		}
	}
}

// pgRefusal is an error the database answered the login with.
type pgRefusal struct{ pgproto3.ErrorResponse }

func (e *pgRefusal) Error() string { return e.Severity + ": " + e.Message }

// sslRequest asks the database for TLS, as RDS requires, and verifies it.
func (s *session) sslRequest(raw net.Conn) (*tls.Conn, error) {
	_ = raw.SetDeadline(time.Now().Add(time.Duration(s.srv.config().DialTimeout)))
	if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
	}
	var answer [1]byte
	if _, err := io.ReadFull(raw, answer[:]); err != nil {
		return nil, &backendError{msg: silentBackend(s.db.Name, "the TLS request", time.Duration(s.srv.config().DialTimeout), err)}
	}
	_ = raw.SetDeadline(time.Time{})
	if answer[0] != 'S' {
		return nil, &backendError{msg: fmt.Sprintf("%s does not offer TLS; rdsgate sends IAM tokens only over verified TLS", s.db.Name)}
	}
	return s.startTLS(raw)
}

// cancelPostgres passes a client's cancel request to the database that runs
// its query, with the database's own key.
func (s *session) cancelPostgres(pid uint32, key []byte) {
	t, ok := s.srv.cancels.lookup(pid, key)
	if !ok {
		s.srv.junk.log(s.srv.log, "cancel request with an unknown key ignored", "client", s.source)
		return
	}
	s.db = t.db
	raw, err := s.dial(context.Background())
	if err != nil {
		s.logger().Warn("cancel request failed", "error", err)
		return
	}
	tc, err := s.sslRequest(raw)
	if err != nil {
		s.logger().Warn("cancel request failed", "error", err)
		return
	}
	msg, _ := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.secret}).Encode(nil)
	_, _ = tc.Write(msg)
	// The server closes the connection once it has the request.
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = tc.Read(make([]byte, 1))
	s.logger().Info("query cancel passed to the database", "backend_pid", t.pid)
}
