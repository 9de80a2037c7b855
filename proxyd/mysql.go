package proxyd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Capabilities the proxy relays as they are. Compression and TLS are per
// leg, so they are never passed through.
const relayableCaps = ^uint32(mysql.CLIENT_COMPRESS | mysql.CLIENT_SSL | mysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM |
	mysql.CLIENT_SSL_VERIFY_SERVER_CERT | mysql.CLIENT_REMEMBER_OPTIONS)

// sidecarCaps are relayed end to end in sidecar mode only. zlib compression
// starts after the login's OK packet, and from then on a sidecar relays the
// session's bytes untouched, so the client and the database compress to each
// other through it, as they would directly. A gateway reads every command
// (RBAC), so it offers no compression.
const sidecarCaps = mysql.CLIENT_COMPRESS

// gatewayCaps are offered to gateway clients before the database is known:
// what MySQL 5.7 and later, Aurora MySQL and MariaDB 10.6 and later all have.
const gatewayCaps = mysql.CLIENT_LONG_PASSWORD | mysql.CLIENT_FOUND_ROWS | mysql.CLIENT_LONG_FLAG | mysql.CLIENT_CONNECT_WITH_DB |
	mysql.CLIENT_IGNORE_SPACE | mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_INTERACTIVE | mysql.CLIENT_TRANSACTIONS |
	mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_MULTI_STATEMENTS | mysql.CLIENT_MULTI_RESULTS | mysql.CLIENT_PS_MULTI_RESULTS |
	mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_CONNECT_ATTRS | mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | mysql.CLIENT_SESSION_TRACK |
	mysql.CLIENT_DEPRECATE_EOF

const (
	// maxMySQLClientLoginPacket bounds what a MySQL client may send before
	// it has logged in (a handshake response, an identity token), as
	// maxStartupPacket does for PostgreSQL: an unauthenticated client must
	// not make the gateway hold memory.
	maxMySQLClientLoginPacket = 16 << 10
	// maxMySQLServerLoginPacket bounds a database's packet during login.
	maxMySQLServerLoginPacket = 1 << 20
)

// readMySQLPacket reads one packet of at most limit bytes. The buffer grows
// with what arrives, not with what the header claims.
func readMySQLPacket(r io.Reader, limit int) (seq byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n > limit {
		return 0, nil, fmt.Errorf("login packet of %d bytes is too large (at most %d before login)", n, limit)
	}
	if n <= 4096 {
		payload = make([]byte, n)
		_, err = io.ReadFull(r, payload)
		return hdr[3], payload, err
	}
	var buf bytes.Buffer
	if _, err = io.CopyN(&buf, r, int64(n)); err != nil {
		return 0, nil, err
	}
	return hdr[3], buf.Bytes(), nil
}

func writeMySQLPacket(w io.Writer, seq byte, payload []byte) error {
	pkt := make([]byte, 4, 4+len(payload))
	pkt[0], pkt[1], pkt[2], pkt[3] = byte(len(payload)), byte(len(payload)>>8), byte(len(payload)>>16), seq
	_, err := w.Write(append(pkt, payload...))
	return err
}

// mysqlGreetingErr is an error sent instead of the greeting: before the
// client has said it speaks protocol 4.1, an ERR packet has no SQL state,
// and its code must be a server's (libmariadb calls a client-range code
// such as 2003 a malformed packet).
func mysqlGreetingErr(code uint16, msg string) []byte {
	return append([]byte{0xff, byte(code), byte(code >> 8)}, msg...)
}

func mysqlErr(code uint16, state, msg string) []byte {
	p := []byte{0xff, byte(code), byte(code >> 8), '#'}
	p = append(p, state...)
	return append(p, msg...)
}

// mysqlGreeting is a server's Handshake v10.
type mysqlGreeting struct {
	version  string
	threadID uint32
	salt     []byte
	caps     uint32
	charset  byte
	status   uint16
	reserved [10]byte // MariaDB keeps its extended capabilities here
	plugin   string
}

func parseMySQLGreeting(p []byte) (*mysqlGreeting, error) {
	if len(p) == 0 || p[0] != 10 {
		return nil, errors.New("not a protocol 10 handshake")
	}
	g := &mysqlGreeting{}
	end := bytes.IndexByte(p[1:], 0)
	if end < 0 {
		return nil, errors.New("short handshake")
	}
	g.version = string(p[1 : 1+end])
	p = p[2+end:]
	if len(p) < 4+8+1+2+1+2+2+1+10 {
		return nil, errors.New("short handshake")
	}
	g.threadID = binary.LittleEndian.Uint32(p)
	g.salt = append([]byte(nil), p[4:12]...)
	p = p[13:]
	g.caps = uint32(binary.LittleEndian.Uint16(p))
	g.charset = p[2]
	g.status = binary.LittleEndian.Uint16(p[3:])
	g.caps |= uint32(binary.LittleEndian.Uint16(p[5:])) << 16
	saltLen := int(p[7])
	copy(g.reserved[:], p[8:18])
	p = p[18:]
	if g.caps&mysql.CLIENT_SECURE_CONNECTION != 0 {
		rest := max(13, saltLen-8)
		if len(p) < rest {
			return nil, errors.New("short handshake salt")
		}
		g.salt = append(g.salt, bytes.TrimRight(p[:rest], "\x00")...)
		p = p[rest:]
	}
	if g.caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
		name, _, _ := bytes.Cut(p, []byte{0})
		g.plugin = string(name)
	}
	return g, nil
}

func (g *mysqlGreeting) encode() []byte {
	p := []byte{10}
	p = append(p, g.version...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, g.threadID)
	p = append(p, g.salt[:8]...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint16(p, uint16(g.caps))
	p = append(p, g.charset)
	p = binary.LittleEndian.AppendUint16(p, g.status)
	p = binary.LittleEndian.AppendUint16(p, uint16(g.caps>>16))
	// The second part of the salt is at least 12 bytes and a NUL.
	part2 := append([]byte(nil), g.salt[8:]...)
	for len(part2) < 12 {
		part2 = append(part2, 0)
	}
	p = append(p, byte(8+len(part2)+1))
	p = append(p, g.reserved[:]...)
	p = append(p, part2...)
	p = append(p, 0)
	p = append(p, g.plugin...)
	return append(p, 0)
}

// HandshakeResponse is a client's HandshakeResponse41.
type HandshakeResponse struct {
	Caps      uint32
	MaxPacket uint32
	Charset   byte
	Reserved  [23]byte
	User      string
	Auth      []byte
	DB        string
	Plugin    string
	Attrs     []byte // the length-encoded block, as sent
}

// ParseHandshakeResponse decodes a HandshakeResponse41; an SSLRequest is
// its first 32 bytes alone.
func ParseHandshakeResponse(p []byte) (*HandshakeResponse, error) {
	if len(p) < 32 {
		return nil, errors.New("handshake response too short")
	}
	r := &HandshakeResponse{Caps: binary.LittleEndian.Uint32(p), MaxPacket: binary.LittleEndian.Uint32(p[4:]), Charset: p[8]}
	if r.Caps&mysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, errors.New("the client speaks the pre-4.1 protocol, which rdsgate does not support")
	}
	copy(r.Reserved[:], p[9:32])
	p = p[32:]
	cut := func() (string, error) {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			return "", errors.New("unterminated string in handshake response")
		}
		s := string(p[:i])
		p = p[i+1:]
		return s, nil
	}
	var err error
	if r.User, err = cut(); err != nil {
		return nil, err
	}
	switch {
	case r.Caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		n, size, ok := lenencInt(p)
		if !ok || n > uint64(len(p)-size) {
			return nil, errors.New("malformed auth data")
		}
		r.Auth, p = p[size:size+int(n)], p[size+int(n):]
	case r.Caps&mysql.CLIENT_SECURE_CONNECTION != 0:
		if len(p) == 0 || int(p[0]) > len(p)-1 {
			return nil, errors.New("malformed auth data")
		}
		r.Auth, p = p[1:1+int(p[0])], p[1+int(p[0]):]
	default:
		s, err := cut()
		if err != nil {
			return nil, err
		}
		r.Auth = []byte(s)
	}
	if r.Caps&mysql.CLIENT_CONNECT_WITH_DB != 0 && len(p) > 0 {
		if r.DB, err = cut(); err != nil {
			return nil, err
		}
	}
	if r.Caps&mysql.CLIENT_PLUGIN_AUTH != 0 && len(p) > 0 {
		if r.Plugin, err = cut(); err != nil {
			// Some clients leave the plugin name unterminated at the end.
			r.Plugin, p = string(p), nil
		}
	}
	if r.Caps&mysql.CLIENT_CONNECT_ATTRS != 0 && len(p) > 0 {
		n, size, ok := lenencInt(p)
		if !ok || n > uint64(len(p)-size) {
			return nil, errors.New("malformed connection attributes")
		}
		r.Attrs = p[:size+int(n)]
	}
	return r, nil
}

// lenencInt decodes a length-encoded integer, refusing truncated input
// (go-mysql's LengthEncodedInt indexes past the end of a short buffer, which
// a client could use to crash the proxy).
func lenencInt(p []byte) (n uint64, size int, ok bool) {
	if len(p) == 0 {
		return 0, 0, false
	}
	switch p[0] {
	case 0xfb, 0xff: // NULL, or not an integer
		return 0, 0, false
	case 0xfc:
		if len(p) < 3 {
			return 0, 0, false
		}
		return uint64(binary.LittleEndian.Uint16(p[1:])), 3, true
	case 0xfd:
		if len(p) < 4 {
			return 0, 0, false
		}
		return uint64(p[1]) | uint64(p[2])<<8 | uint64(p[3])<<16, 4, true
	case 0xfe:
		if len(p) < 9 {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint64(p[1:]), 9, true
	}
	return uint64(p[0]), 1, true
}

func (r *HandshakeResponse) sslRequest(caps uint32) []byte {
	p := binary.LittleEndian.AppendUint32(nil, caps)
	p = binary.LittleEndian.AppendUint32(p, r.MaxPacket)
	p = append(p, r.Charset)
	return append(p, r.Reserved[:]...)
}

func (r *HandshakeResponse) encode(caps uint32, auth []byte, plugin string) []byte {
	p := r.sslRequest(caps)
	p = append(p, r.User...)
	p = append(p, 0)
	p = append(p, mysql.PutLengthEncodedInt(uint64(len(auth)))...)
	p = append(p, auth...)
	if caps&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		p = append(p, r.DB...)
		p = append(p, 0)
	}
	p = append(p, plugin...)
	p = append(p, 0)
	if caps&mysql.CLIENT_CONNECT_ATTRS != 0 && len(r.Attrs) > 0 {
		p = append(p, r.Attrs...)
	}
	return p
}

// mysqlIDs maps the connection ids the gateway hands to MySQL clients to the
// database's thread ids, for KILL.
type mysqlIDs struct {
	mu sync.Mutex
	m  map[uint32]mysqlThread
}

type mysqlThread struct {
	db       *Database
	thread   uint32
	identity string
}

func (m *mysqlIDs) set(id uint32, t mysqlThread) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[uint32]mysqlThread{}
	}
	m.m[id] = t
}

func (m *mysqlIDs) remove(id uint32) {
	m.mu.Lock()
	delete(m.m, id)
	m.mu.Unlock()
}

func (m *mysqlIDs) get(id uint32) (mysqlThread, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[id]
	return t, ok
}

func (s *session) runMySQL() {
	_ = s.client.SetDeadline(time.Now().Add(time.Duration(s.srv.config().HandshakeTimeout)))
	gateway := s.db == nil
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	var backend net.Conn
	var g *mysqlGreeting
	offer := &mysqlGreeting{version: "8.0.36-rdsgate", threadID: s.id, caps: gatewayCaps | mysql.CLIENT_SSL, charset: 45, status: mysql.SERVER_STATUS_AUTOCOMMIT,
		plugin: "mysql_native_password"}
	if !gateway {
		// Sidecar: greet the client as the database does, with its thread
		// id, so the client's KILL QUERY reaches the right thread.
		var err error
		if backend, g, err = s.mysqlGreeting(ctx); err != nil {
			s.count("backend_error")
			s.logger().Warn("cannot reach the database", "error", err)
			_ = writeMySQLPacket(s.client, 0, mysqlGreetingErr(1105, "rdsgate: "+err.Error()))
			return
		}
		offer = &mysqlGreeting{version: g.version, threadID: g.threadID, caps: g.caps & (relayableCaps | sidecarCaps), charset: g.charset, status: g.status,
			reserved: g.reserved, plugin: "mysql_native_password"}
		if s.clientTLS() != nil {
			offer.caps |= mysql.CLIENT_SSL
		}
	}
	offer.salt = make([]byte, 20)
	_, _ = rand.Read(offer.salt)
	for i := range offer.salt {
		offer.salt[i] = offer.salt[i]&0x7f | 1
	}
	if err := writeMySQLPacket(s.client, 0, offer.encode()); err != nil {
		return
	}
	var conn net.Conn = s.client
	seq, p, err := readMySQLPacket(conn, maxMySQLClientLoginPacket)
	if err != nil {
		s.count("client_error")
		return
	}
	if len(p) == 32 && binary.LittleEndian.Uint32(p)&mysql.CLIENT_SSL != 0 {
		conf := s.clientTLS()
		if conf == nil {
			return // not offered; the client gives up on its own
		}
		tc := tls.Server(conn, conf)
		if err := tc.Handshake(); err != nil {
			s.count("client_error")
			s.tlsFailed(err)
			return
		}
		conn = tc
		if seq, p, err = readMySQLPacket(conn, maxMySQLClientLoginPacket); err != nil {
			s.count("client_error")
			return
		}
	}
	resp, err := ParseHandshakeResponse(p)
	if err != nil {
		s.count("client_error")
		_ = writeMySQLPacket(conn, seq+1, mysqlErr(1043, "08S01", "rdsgate: bad handshake: "+err.Error()))
		return
	}
	s.user, s.dbName = resp.User, resp.DB
	rule := ""
	deny := func(reason, msg string) {
		s.count("denied")
		s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), reason).Inc()
		s.logger().Warn("connection denied", "reason", reason, "detail", msg, "db_name", sanitize(s.dbName))
		s.auditDenied(reason, msg, rule)
		if msg != "" {
			_ = writeMySQLPacket(conn, seq+1, mysqlErr(1045, "28000", msg))
		}
	}
	if gateway {
		target, dbName, err := s.route(conn, resp.DB)
		if err != nil {
			deny("routing", "rdsgate: "+err.Error())
			return
		}
		s.db, s.dbName = target, dbName
		if s.db.Protocol != ProtocolMySQL {
			deny("routing", fmt.Sprintf("rdsgate: %s is a %s database; connect to the gateway's %s listener", s.db.Name, s.db.Protocol, s.db.Protocol))
			return
		}
		// Without a certificate, ask for an identity token in clear text
		// (over TLS): an auth switch to mysql_clear_password.
		ids, reason, msg := s.clientIdentity(conn, func() (string, error) {
			if err := writeMySQLPacket(conn, seq+1, append([]byte{0xfe}, "mysql_clear_password\x00"...)); err != nil {
				return "", err
			}
			rseq, p, err := readMySQLPacket(conn, maxMySQLClientLoginPacket)
			if err != nil {
				return "", err
			}
			seq = rseq
			return strings.TrimRight(string(p), "\x00"), nil
		})
		if ids.IsZero() {
			deny(reason, msg)
			return
		}
		var denied string
		if reason, denied, rule = s.authorize(ids); denied != "" {
			deny(reason, denied)
			return
		}
		if !s.promote(conn, seq+1) {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(loginTimeout))
		resp.DB = dbName
		if dbName == "" {
			resp.Caps &^= mysql.CLIENT_CONNECT_WITH_DB
		} else {
			resp.Caps |= mysql.CLIENT_CONNECT_WITH_DB
		}
		if backend, g, err = s.mysqlGreeting(ctx); err != nil {
			s.count("backend_error")
			s.logger().Warn("cannot reach the database", "error", err)
			_ = writeMySQLPacket(conn, seq+1, mysqlErr(2003, "HY000", "rdsgate: "+err.Error()))
			return
		}
	} else if !s.db.allowsUser(s.user) {
		deny("db_user", fmt.Sprintf("rdsgate: database user '%s' may not connect to %s (allowed: %s)", sanitize(s.user), s.db.Name, strings.Join(s.db.DBUsers, ", ")))
		return
	} else {
		if !s.promote(conn, seq+1) {
			return
		}
		_ = conn.SetDeadline(time.Now().Add(loginTimeout))
	}

	start := time.Now()
	relayed := relayableCaps
	if !gateway {
		relayed |= sidecarCaps
	}
	var (
		tc net.Conn
		br *bufio.Reader
		ok []byte
	)
	redial := false
	err = s.srv.signers.try(s, func(signer *Database) (err error) {
		if redial {
			// The database closes a connection whose login it refused:
			// the next principal logs in on a new one. (A sidecar client
			// was greeted with the first one's thread id.)
			if backend, g, err = s.mysqlGreeting(ctx); err != nil {
				return err
			}
		}
		redial = true
		tc, br, ok, err = s.loginMySQL(ctx, backend, g, resp, relayed, signer)
		return err
	})
	if err != nil {
		var refused *mysqlRefusal
		switch {
		case errors.As(err, &refused):
			s.count("auth_failed")
			s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), "database_refused_token").Inc()
			s.logger().Warn("the database refused the login", "code", refused.code, "error", refused.msg, "hint", refusedTokenHint(s.db, s.user))
			s.auditDenied("database_refused", refused.msg, "")
			_ = writeMySQLPacket(conn, seq+1, refused.packet)
		default:
			s.count("backend_error")
			s.logger().Warn("login to the database failed", "error", err)
			_ = writeMySQLPacket(conn, seq+1, mysqlErr(2013, "HY000", "rdsgate: "+err.Error()))
		}
		return
	}
	s.srv.metrics.dialSeconds.WithLabelValues(s.db.Name).Observe(time.Since(start).Seconds())
	if err := writeMySQLPacket(conn, seq+1, ok); err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})
	s.atEnd(s.established(start, "thread_id", g.threadID))
	pending := unread(br)
	if gateway {
		s.srv.mysqlIDs.set(s.id, mysqlThread{db: s.db, thread: g.threadID, identity: s.identity})
		defer s.srv.mysqlIDs.remove(s.id)
		s.relayMySQLGateway(conn, tc, pending)
		return
	}
	s.relay(conn, tc, nil, pending)
}

// mysqlGreeting connects to the database and reads its greeting.
func (s *session) mysqlGreeting(ctx context.Context) (net.Conn, *mysqlGreeting, error) {
	raw, err := s.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(time.Duration(s.srv.config().DialTimeout)))
	_, p, err := readMySQLPacket(raw, maxMySQLServerLoginPacket)
	if err != nil {
		return nil, nil, &backendError{msg: silentBackend(s.db.Name, "its greeting", time.Duration(s.srv.config().DialTimeout), err)}
	}
	if len(p) > 3 && p[0] == 0xff {
		return nil, nil, &backendError{msg: fmt.Sprintf("%s refused the connection: %s", s.db.Name, string(p[3:]))}
	}
	g, err := parseMySQLGreeting(p)
	if err != nil {
		return nil, nil, &backendError{msg: fmt.Sprintf("%s: %v", s.db.Name, err)}
	}
	if g.caps&mysql.CLIENT_SSL == 0 {
		return nil, nil, &backendError{msg: fmt.Sprintf("%s does not offer TLS; rdsgate sends IAM tokens only over verified TLS", s.db.Name)}
	}
	return raw, g, nil
}

// mysqlRefusal is an error packet from the database during login.
type mysqlRefusal struct {
	code   uint16
	msg    string
	packet []byte
}

func (e *mysqlRefusal) Error() string { return fmt.Sprintf("ERROR %d: %s", e.code, e.msg) }

// loginMySQL upgrades the database connection to TLS and logs in with the
// client's capabilities and an IAM token over mysql_clear_password. It
// returns the OK packet for the client.
func (s *session) loginMySQL(ctx context.Context, raw net.Conn, g *mysqlGreeting, resp *HandshakeResponse, relayed uint32, signer *Database) (net.Conn, *bufio.Reader, []byte, error) {
	token, err := s.srv.creds.token(ctx, s.srv.base, signer, s.user)
	if err != nil {
		raw.Close() // another principal logs in on a new connection
		return nil, nil, nil, &backendError{msg: err.Error(), signing: true}
	}
	caps := (resp.Caps & relayed & g.caps) | mysql.CLIENT_SSL | mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION |
		mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
	if err := writeMySQLPacket(raw, 1, resp.sslRequest(caps)); err != nil {
		return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
	}
	tc, err := s.startTLS(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	_ = tc.SetDeadline(time.Now().Add(time.Duration(s.srv.config().DialTimeout)))
	defer tc.SetDeadline(time.Time{})
	auth := append([]byte(token), 0)
	if err := writeMySQLPacket(tc, 2, resp.encode(caps, auth, "mysql_clear_password")); err != nil {
		return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
	}
	br := bufio.NewReaderSize(tc, 4096)
	for {
		seq, p, err := readMySQLPacket(br, maxMySQLServerLoginPacket)
		if err != nil {
			return nil, nil, nil, &backendError{msg: fmt.Sprintf("%s closed the connection during login: %v", s.db.Name, err)}
		}
		switch {
		case len(p) == 0:
			return nil, nil, nil, &backendError{msg: fmt.Sprintf("empty packet from %s during login", s.db.Name)}
		case p[0] == 0x00:
			return tc, br, p, nil
		case p[0] == 0xff:
			code, msg := uint16(0), ""
			if len(p) >= 3 {
				code = binary.LittleEndian.Uint16(p[1:])
			}
			if len(p) > 9 && p[3] == '#' {
				msg = string(p[9:])
			}
			tc.Close()
			return nil, nil, nil, &mysqlRefusal{code: code, msg: msg, packet: p}
		case p[0] == 0xfe:
			name, _, _ := bytes.Cut(p[1:], []byte{0})
			if string(name) != "mysql_clear_password" {
				return nil, nil, nil, &backendError{msg: fmt.Sprintf("%s wants %s to log in with %s, not an IAM token: %s", s.db.Name, s.user, name, refusedTokenHint(s.db, s.user))}
			}
			if err := writeMySQLPacket(tc, seq+1, auth); err != nil {
				return nil, nil, nil, &backendError{msg: fmt.Sprintf("writing to %s: %v", s.db.Name, err)}
			}
		default:
			return nil, nil, nil, &backendError{msg: fmt.Sprintf("unexpected login packet 0x%02x from %s", p[0], s.db.Name)}
		}
	}
}

// killTarget translates a gateway connection id to the database's thread
// id, for a connection of the same identity through the same database only;
// any other id becomes 0, which no thread has, so the database answers
// "Unknown thread id".
func (s *session) killTarget(id uint64) uint32 {
	t, ok := s.srv.mysqlIDs.get(uint32(id))
	if id > 0xffffffff || !ok || t.db != s.db || t.identity != s.identity {
		s.logger().Info("KILL of a connection that is not the client's own", "connection", id)
		return 0
	}
	s.logger().Info("KILL passed to the database", "connection", id, "thread_id", t.thread)
	return t.thread
}

// lockedConn serializes writes to the client: the relay of the database's
// answers and the gateway's own error packets.
type lockedConn struct {
	net.Conn
	mu *sync.Mutex
}

func (c lockedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// relayMySQLGateway relays like relay, but reads the client's commands to
// keep the RBAC true for the whole session: a change of database (USE,
// COM_INIT_DB) is checked like a login, COM_CHANGE_USER is refused (the
// gateway logs in each database user itself), and KILL is translated.
func (s *session) relayMySQLGateway(client, backend net.Conn, toClient []byte) {
	up := s.countBytes(s.dbLabel(), "to_database")
	down := s.countBytes(s.dbLabel(), "to_client")
	lc := lockedConn{Conn: client, mu: &sync.Mutex{}}
	if len(toClient) > 0 {
		if _, err := lc.Write(toClient); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(lc, backend, down)
		s.close()
	}()
	defer func() {
		s.close()
		<-done
	}()
	br := bufio.NewReaderSize(client, relayBufferSize)
	continued := false
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		refuse := func(code uint16, state, msg string) error {
			return writeMySQLPacket(lc, hdr[3]+1, mysqlErr(code, state, msg))
		}
		switch {
		case continued:
			// The rest of a query longer than a packet: its start was
			// judged; a USE or KILL hidden further on ends the session
			// before the server has the whole query.
			if v := judgeMySQLQuery(payload); v.refuse != "" || v.kill != nil || len(v.use) > 0 {
				s.auditSession("refused", "long_query", "a USE or KILL inside a query longer than 16 MiB")
				s.logger().Warn("closing a session whose long query holds USE or KILL")
				return
			}
		case n == 0:
		case payload[0] == mysql.COM_CHANGE_USER:
			s.auditSession("refused", "change_user", "COM_CHANGE_USER")
			_ = refuse(1227, "42000", "rdsgate: changing the database user in a session is not allowed through the gateway; connect again as that user (each login is checked against the gateway's RBAC)")
			return
		case payload[0] == mysql.COM_INIT_DB:
			if !s.changeDB(string(payload[1:]), "COM_INIT_DB", refuse) {
				continue
			}
		case payload[0] == mysql.COM_PROCESS_KILL && n == 5:
			binary.LittleEndian.PutUint32(payload[1:], s.killTarget(uint64(binary.LittleEndian.Uint32(payload[1:]))))
		case payload[0] == mysql.COM_QUERY || payload[0] == mysql.COM_STMT_PREPARE:
			v := judgeMySQLQuery(payload[1:])
			switch {
			case v.refuse != "" || (v.kill != nil && (payload[0] != mysql.COM_QUERY || n == 0xffffff)):
				msg := v.refuse
				if msg == "" {
					msg = "rdsgate: send KILL as a query of its own (the gateway translates the connection id)"
				}
				s.auditSession("refused", "statement", msg)
				if n == 0xffffff {
					return
				}
				if refuse(1227, "42000", msg) != nil {
					return
				}
				continue
			case v.kill != nil:
				kind := ""
				if v.kill.query {
					kind = "QUERY "
				}
				payload = append([]byte{payload[0]}, fmt.Sprintf("KILL %s%d", kind, s.killTarget(v.kill.id))...)
				n = len(payload)
				hdr[0], hdr[1], hdr[2] = byte(n), byte(n>>8), byte(n>>16)
			case len(v.use) > 0:
				ok := true
				for _, name := range v.use {
					if ok = s.changeDB(name, "USE", refuse); !ok {
						break
					}
				}
				if !ok {
					if n == 0xffffff {
						return
					}
					continue
				}
			}
		}
		continued = n == 0xffffff
		if _, err := backend.Write(append(hdr[:], payload...)); err != nil {
			return
		}
		up.Add(float64(4 + n))
	}
}

// changeDB checks a change of database against the RBAC; it answers the
// client itself when the change is denied, and audits either way.
func (s *session) changeDB(name, how string, refuse func(code uint16, state, msg string) error) bool {
	reason, msg, rule := s.authorizeDB(name)
	if msg != "" {
		s.srv.metrics.authFail.WithLabelValues(s.dbLabel(), "rbac_change_db").Inc()
		s.logger().Warn("change of database denied", "how", how, "db_name", sanitize(name), "detail", msg)
		e := s.auditEvent("denied", reason)
		e.DBName, e.Reason, e.Rule = sanitize(name), how+": "+msg, rule
		s.srv.audit.write(e)
		_ = refuse(1044, "42000", msg)
		return false
	}
	prev := s.dbName
	s.dbName = name
	s.logger().Info("database changed", "how", how, "from", sanitize(prev), "db_name", sanitize(name), "rule", rule)
	e := s.auditEvent("db_change", "ok")
	e.Reason, e.Rule = fmt.Sprintf("%s from %q", how, sanitize(prev)), rule
	s.srv.audit.write(e)
	return true
}
