package rdsemu

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
)

// Postgres starts an emulated RDS for PostgreSQL endpoint in front of pg.
// Database users must be members of rds_iam, as on RDS; the emulator creates
// that role.
func Postgres(t testenv.T, pg *testenv.Postgres, o Options) *Server {
	t.Helper()
	pg.SQL(t, "postgres", "DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	s := newServer(t, pg.CA, o)
	socket := filepath.Join(pg.SocketDir, ".s.PGSQL."+strconv.Itoa(pg.Port))
	s.handle = func(c net.Conn) { s.servePostgres(c, socket) }
	s.serve()
	return s
}

func readStartupPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > 10000 {
		return nil, fmt.Errorf("bad startup packet length %d", n)
	}
	body := make([]byte, n-4)
	_, err := io.ReadFull(r, body)
	return body, err
}

func pgFatal(w io.Writer, code, msg string) {
	buf, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}).Encode(nil)
	_, _ = w.Write(buf)
}

func (s *Server) servePostgres(client net.Conn, socket string) {
	conn, startup, ok := s.startPostgres(client, socket)
	if !ok {
		return
	}
	user := startup.Parameters["user"]
	// RDS asks IAM users for a password in clear text: the token.
	br, pw, ok := askPassword(conn, &pgproto3.AuthenticationCleartextPassword{})
	if !ok {
		return
	}
	if err := s.verify(pw, user); err != nil {
		pgFatal(conn, "28P01", fmt.Sprintf(`PAM authentication failed for user "%s"`, user))
		return
	}
	s.loginAndRelay(conn, br, startup, socket, "")
}

// startPostgres takes a client to its startup message: TLS when asked
// (and required), cancel requests passed on to the server. The startup's
// database defaults to its user.
func (s *Server) startPostgres(client net.Conn, socket string) (net.Conn, *pgproto3.StartupMessage, bool) {
	var conn net.Conn = client
	encrypted := false
	var body []byte
	for {
		var err error
		if body, err = readStartupPacket(conn); err != nil {
			return nil, nil, false
		}
		code := binary.BigEndian.Uint32(body)
		switch code {
		case sslRequestCode:
			if encrypted {
				return nil, nil, false
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, nil, false
			}
			tc := tls.Server(conn, s.tls)
			if err := tc.Handshake(); err != nil {
				return nil, nil, false
			}
			conn, encrypted = tc, true
			continue
		case gssEncRequestCode:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, nil, false
			}
			continue
		case cancelRequestCode:
			// Pass the cancel on to the real server, which checks the key.
			if pg, err := net.Dial("unix", socket); err == nil {
				pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
				_, _ = pg.Write(append(pkt, body...))
				pg.Close()
			}
			return nil, nil, false
		}
		break
	}
	var startup pgproto3.StartupMessage
	if err := startup.Decode(body); err != nil {
		pgFatal(conn, "08P01", "invalid startup packet layout")
		return nil, nil, false
	}
	user, db := startup.Parameters["user"], startup.Parameters["database"]
	if db == "" {
		db = user
	}
	startup.Parameters["database"] = db
	if !encrypted {
		s.refuse(fmt.Errorf("no TLS"))
		pgFatal(conn, "28000", fmt.Sprintf(`no pg_hba.conf entry for host "%s", user "%s", database "%s", no encryption`, remoteIP(client), user, db))
		return nil, nil, false
	}
	return conn, &startup, true
}

// askPassword sends an authentication request and reads the client's
// answer; the reader may hold what the client sent after it.
func askPassword(conn net.Conn, ask pgproto3.BackendMessage) (*bufio.Reader, string, bool) {
	b, _ := ask.Encode(nil)
	if _, err := conn.Write(b); err != nil {
		return nil, "", false
	}
	br := bufio.NewReader(conn)
	pw, err := readPassword(br)
	return br, pw, err == nil
}

// readPassword reads a PasswordMessage.
func readPassword(br *bufio.Reader) (string, error) {
	typ, err := br.ReadByte()
	if err != nil || typ != 'p' {
		return "", fmt.Errorf("expected a password message")
	}
	var lenBuf [4]byte
	if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(lenBuf[:])
	if n < 5 || n > 16<<10 {
		return "", fmt.Errorf("bad password message length %d", n)
	}
	msg := make([]byte, n-4)
	if _, err := io.ReadFull(br, msg); err != nil {
		return "", err
	}
	var pw pgproto3.PasswordMessage
	if err := pw.Decode(msg); err != nil {
		return "", err
	}
	return pw.Password, nil
}

// loginAndRelay logs in to the real server with the client's startup
// parameters and relays. RDS (redshiftUser "") applies IAM authentication
// only to members of rds_iam; Redshift's temporary users need no such role.
func (s *Server) loginAndRelay(conn net.Conn, br *bufio.Reader, startup *pgproto3.StartupMessage, socket, redshiftUser string) {
	user := startup.Parameters["user"]
	backend, err := net.Dial("unix", socket)
	if err != nil {
		pgFatal(conn, "08006", "could not connect to server: "+err.Error())
		return
	}
	defer backend.Close()
	fe := pgproto3.NewFrontend(backend, backend)
	params := map[string]string{}
	for k, v := range startup.Parameters {
		params[k] = v
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
	if err := fe.Flush(); err != nil {
		return
	}
	var greeting [][]byte
	for {
		m, err := fe.Receive()
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			s.refuse(fmt.Errorf("server: %s", m.Message))
			b, _ := m.Encode(nil)
			_, _ = conn.Write(b)
			return
		case *pgproto3.AuthenticationOk:
		case *pgproto3.ReadyForQuery:
			b, _ := m.Encode(nil)
			greeting = append(greeting, b)
			goto ready
		case pgproto3.BackendMessage:
			b, err := m.Encode(nil)
			if err != nil {
				return
			}
			greeting = append(greeting, b)
		}
	}
ready:
	if redshiftUser == "" {
		fe.Send(&pgproto3.Query{String: "SELECT pg_has_role(current_user, 'rds_iam', 'MEMBER')"})
		if err := fe.Flush(); err != nil {
			return
		}
		member := false
		for {
			m, err := fe.Receive()
			if err != nil {
				return
			}
			if row, ok := m.(*pgproto3.DataRow); ok && len(row.Values) == 1 {
				member = string(row.Values[0]) == "t"
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if !member {
			s.refuse(fmt.Errorf("%s is not a member of rds_iam", user))
			pgFatal(conn, "28P01", fmt.Sprintf(`password authentication failed for user "%s"`, user))
			return
		}
	}
	s.Accepted.Add(1)
	ok, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	out := ok
	for _, g := range greeting {
		out = append(out, g...)
	}
	if _, err := conn.Write(out); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		pending, _ := br.Peek(n)
		if _, err := backend.Write(pending); err != nil {
			return
		}
	}
	relay(conn, backend)
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}
