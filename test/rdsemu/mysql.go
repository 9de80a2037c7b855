package rdsemu

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// MySQL starts an emulated RDS for MySQL endpoint in front of a MariaDB
// server. IAM users must exist in MariaDB with the given password, which the
// emulator uses to log in once the token checks out.
func MySQL(t testenv.T, m *testenv.MariaDB, password string, o Options) *Server {
	t.Helper()
	s := newServer(t, m.CA, o)
	s.handle = func(c net.Conn) { s.serveMySQL(c, m.Socket, password) }
	s.serve()
	return s
}

// packet framing: 3-byte length, sequence id.
func readPacket(r io.Reader) (seq byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return hdr[3], payload, err
}

func writePacket(w io.Writer, seq byte, payload []byte) error {
	hdr := []byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}
	_, err := w.Write(append(hdr, payload...))
	return err
}

func errPacket(code uint16, state, msg string) []byte {
	p := []byte{0xff, byte(code), byte(code >> 8), '#'}
	p = append(p, state...)
	return append(p, msg...)
}

// greeting is the parts of a server's Handshake v10 the emulator passes on.
type greeting struct {
	version  string
	threadID uint32
	salt     []byte
	caps     uint32
	charset  byte
	status   uint16
}

func parseGreeting(p []byte) (*greeting, error) {
	if len(p) < 1 || p[0] != 10 {
		return nil, fmt.Errorf("not a v10 handshake")
	}
	g := &greeting{}
	i := bytes.IndexByte(p[1:], 0)
	if i < 0 {
		return nil, fmt.Errorf("short handshake")
	}
	g.version = string(p[1 : 1+i])
	p = p[2+i:]
	if len(p) < 4+8+1+2+1+2+2+1+10 {
		return nil, fmt.Errorf("short handshake")
	}
	g.threadID = binary.LittleEndian.Uint32(p)
	g.salt = append([]byte(nil), p[4:12]...)
	p = p[13:]
	g.caps = uint32(binary.LittleEndian.Uint16(p))
	g.charset = p[2]
	g.status = binary.LittleEndian.Uint16(p[3:])
	g.caps |= uint32(binary.LittleEndian.Uint16(p[5:])) << 16
	saltLen := int(p[7])
	p = p[8+10:]
	rest := max(13, saltLen-8)
	if len(p) < rest {
		return nil, fmt.Errorf("short salt")
	}
	g.salt = append(g.salt, p[:rest-1]...) // without the NUL
	return g, nil
}

func (g *greeting) encode(caps uint32, salt []byte, plugin string) []byte {
	p := []byte{10}
	p = append(p, g.version...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, g.threadID)
	p = append(p, salt[:8]...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, g.charset)
	p = binary.LittleEndian.AppendUint16(p, g.status)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, byte(len(salt)+1))
	p = append(p, make([]byte, 10)...)
	p = append(p, salt[8:]...)
	p = append(p, 0)
	p = append(p, plugin...)
	return append(p, 0)
}

// response is a parsed HandshakeResponse41.
type response struct {
	caps    uint32
	maxPkt  uint32
	charset byte
	user    string
	auth    []byte
	db      string
	plugin  string
	attrs   []byte // length-encoded block, as sent
}

func parseResponse(p []byte) (*response, error) {
	if len(p) < 32 {
		return nil, fmt.Errorf("short handshake response")
	}
	r := &response{caps: binary.LittleEndian.Uint32(p), maxPkt: binary.LittleEndian.Uint32(p[4:]), charset: p[8]}
	p = p[32:]
	cut := func() (string, bool) {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			return "", false
		}
		s := string(p[:i])
		p = p[i+1:]
		return s, true
	}
	var ok bool
	if r.user, ok = cut(); !ok {
		return nil, fmt.Errorf("no user")
	}
	switch {
	case r.caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		n, _, size := mysql.LengthEncodedInt(p)
		if size == 0 || int(n)+size > len(p) {
			return nil, fmt.Errorf("bad auth data")
		}
		r.auth, p = p[size:size+int(n)], p[size+int(n):]
	case r.caps&mysql.CLIENT_SECURE_CONNECTION != 0:
		if len(p) < 1 || int(p[0])+1 > len(p) {
			return nil, fmt.Errorf("bad auth data")
		}
		r.auth, p = p[1:1+int(p[0])], p[1+int(p[0]):]
	default:
		s, _ := cut()
		r.auth = []byte(s)
	}
	if r.caps&mysql.CLIENT_CONNECT_WITH_DB != 0 && len(p) > 0 {
		r.db, _ = cut()
	}
	if r.caps&mysql.CLIENT_PLUGIN_AUTH != 0 && len(p) > 0 {
		r.plugin, _ = cut()
	}
	if r.caps&mysql.CLIENT_CONNECT_ATTRS != 0 {
		r.attrs = p
	}
	return r, nil
}

func (r *response) encode(caps uint32, auth []byte, plugin string) []byte {
	p := binary.LittleEndian.AppendUint32(nil, caps)
	p = binary.LittleEndian.AppendUint32(p, r.maxPkt)
	p = append(p, r.charset)
	p = append(p, make([]byte, 23)...)
	p = append(p, r.user...)
	p = append(p, 0)
	if caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
		p = append(p, mysql.PutLengthEncodedInt(uint64(len(auth)))...)
	} else {
		p = append(p, byte(len(auth)))
	}
	p = append(p, auth...)
	if caps&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		p = append(p, r.db...)
		p = append(p, 0)
	}
	if caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
		p = append(p, plugin...)
		p = append(p, 0)
	}
	if caps&mysql.CLIENT_CONNECT_ATTRS != 0 {
		p = append(p, r.attrs...)
	}
	return p
}

// nativeScramble is mysql_native_password's answer to a salt.
func nativeScramble(password string, salt []byte) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h3 := sha1.New()
	h3.Write(salt[:20])
	h3.Write(h2[:])
	out := h3.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

func (s *Server) serveMySQL(client net.Conn, socket, password string) {
	backend, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	defer backend.Close()
	_, gp, err := readPacket(backend)
	if err != nil {
		return
	}
	g, err := parseGreeting(gp)
	if err != nil {
		return
	}
	// The client sees the real server's greeting (version, thread id, so
	// KILL QUERY works), plus TLS, and a salt of the emulator's own.
	salt := make([]byte, 20)
	_, _ = rand.Read(salt)
	for i := range salt {
		salt[i] = salt[i]&0x7f | 1 // no NUL, as servers do
	}
	offered := g.caps | mysql.CLIENT_SSL
	if err := writePacket(client, 0, g.encode(offered, salt, "mysql_native_password")); err != nil {
		return
	}
	var conn net.Conn = client
	seq, p, err := readPacket(conn)
	if err != nil {
		return
	}
	host := remoteIP(client)
	if len(p) == 32 && binary.LittleEndian.Uint32(p)&mysql.CLIENT_SSL != 0 {
		tc := tls.Server(conn, s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		conn = tc
		if seq, p, err = readPacket(conn); err != nil {
			return
		}
	}
	r, err := parseResponse(p)
	if err != nil {
		_ = writePacket(conn, seq+1, errPacket(1043, "08S01", "Bad handshake"))
		return
	}
	denied := errPacket(1045, "28000", fmt.Sprintf("Access denied for user '%s'@'%s' (using password: YES)", r.user, host))
	if conn == client {
		s.refuse(fmt.Errorf("no TLS"))
		_ = writePacket(conn, seq+1, denied)
		return
	}
	token := r.auth
	if r.plugin != "mysql_clear_password" {
		// AWSAuthenticationPlugin takes the token in clear text.
		sw := append([]byte{0xfe}, "mysql_clear_password\x00"...)
		if err := writePacket(conn, seq+1, sw); err != nil {
			return
		}
		if seq, token, err = readPacket(conn); err != nil {
			return
		}
	}
	token = bytes.TrimRight(token, "\x00")
	if err := s.verify(string(token), r.user); err != nil {
		_ = writePacket(conn, seq+1, denied)
		return
	}
	caps := r.caps &^ mysql.CLIENT_SSL
	if err := writePacket(backend, 1, r.encode(caps, nativeScramble(password, g.salt), "mysql_native_password")); err != nil {
		return
	}
	for {
		bseq, bp, err := readPacket(backend)
		if err != nil {
			return
		}
		switch {
		case len(bp) > 0 && bp[0] == 0xfe: // auth switch from the server
			name, data, _ := bytes.Cut(bp[1:], []byte{0})
			if string(name) != "mysql_native_password" {
				_ = writePacket(conn, seq+1, errPacket(1045, "28000", "emulator: unsupported server plugin "+string(name)))
				return
			}
			if err := writePacket(backend, bseq+1, nativeScramble(password, data)); err != nil {
				return
			}
			continue
		case len(bp) > 0 && bp[0] == 0xff:
			s.refuse(fmt.Errorf("server refused %s", r.user))
			_ = writePacket(conn, seq+1, denied)
			return
		}
		if err := writePacket(conn, seq+1, bp); err != nil {
			return
		}
		break
	}
	s.Accepted.Add(1)
	relay(conn, backend)
}
