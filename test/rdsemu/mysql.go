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

// errPacket is an ERR_Packet as the protocol 4.1 documents it: 0xff,
// error_code int<2>, the marker '#', sql_state string[5], then the message
// to the end of the packet.
func errPacket(code uint16, state, msg string) []byte {
	return fmt.Appendf(binary.LittleEndian.AppendUint16([]byte{0xff}, code), "#%.5s%s", state, msg)
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

// parseGreeting reads the server's Protocol::HandshakeV10 in the
// documented field order: the salt is auth-plugin-data-part-1 (8 bytes) and
// part 2 (the rest of auth_plugin_data_len, at least 13 with its NUL).
func parseGreeting(p []byte) (*greeting, error) {
	f := &fields{b: p}
	if v := f.int(1, "protocol version"); v != 10 {
		return nil, fmt.Errorf("greeting: protocol version %d, not 10", v)
	}
	g := &greeting{}
	g.version = f.nul("server version")
	g.threadID = uint32(f.int(4, "thread id"))
	g.salt = append([]byte(nil), f.bytes(8, "auth-plugin-data-part-1")...)
	f.bytes(1, "filler")
	g.caps = uint32(f.int(2, "capability flags (lower)"))
	g.charset = byte(f.int(1, "character set"))
	g.status = uint16(f.int(2, "status flags"))
	g.caps |= uint32(f.int(2, "capability flags (upper)")) << 16
	saltLen := int(f.int(1, "auth_plugin_data_len"))
	f.bytes(10, "reserved")
	part2 := f.bytes(uint64(max(13, saltLen-8)), "auth-plugin-data-part-2")
	if f.err != nil {
		return nil, f.err
	}
	g.salt = append(g.salt, bytes.TrimRight(part2, "\x00")...)
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

// response is a HandshakeResponse41, read from the MySQL protocol
// documentation (Protocol::HandshakeResponse41 and Protocol::SSLRequest in
// the MySQL server's "Connection Phase Packets"), field by field in the
// documented order. The emulator stands in for RDS in the tests, so it is
// strict where the documentation is: a proxy that writes a field wrongly
// fails here rather than being read with its own misreading. Nothing is
// shared with the proxy's parser (proxyd/mysql.go).
type response struct {
	caps    uint32
	maxPkt  uint32
	charset byte
	user    string
	auth    []byte
	db      string
	plugin  string
	attrs   []byte // the length-encoded block, as sent
}

// fields reads a packet's fields in order; the first failure sticks and
// names the field.
type fields struct {
	b   []byte
	err error
}

func (f *fields) fail(field, why string) {
	if f.err == nil {
		f.err = fmt.Errorf("%s: %s", field, why)
	}
}

func (f *fields) bytes(n uint64, field string) []byte {
	if f.err != nil {
		return nil
	}
	if n > uint64(len(f.b)) {
		f.fail(field, fmt.Sprintf("%d bytes declared, %d left in the packet", n, len(f.b)))
		return nil
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

func (f *fields) int(n int, field string) uint64 {
	var v uint64
	for i, c := range f.bytes(uint64(n), field) {
		v |= uint64(c) << (8 * i)
	}
	return v
}

// nul is a string<NUL>: a terminator is required.
func (f *fields) nul(field string) string {
	if f.err != nil {
		return ""
	}
	i := bytes.IndexByte(f.b, 0)
	if i < 0 {
		f.fail(field, "no NUL terminator")
		return ""
	}
	v := string(f.b[:i])
	f.b = f.b[i+1:]
	return v
}

// lenenc is an int<lenenc>: 0xfb (NULL) and 0xff are not integers.
func (f *fields) lenenc(field string) uint64 {
	switch first := f.int(1, field); first {
	case 0xfc:
		return f.int(2, field)
	case 0xfd:
		return f.int(3, field)
	case 0xfe:
		return f.int(8, field)
	case 0xfb, 0xff:
		f.fail(field, fmt.Sprintf("0x%02x is not a length-encoded integer", first))
		return 0
	default:
		return first
	}
}

// parseResponse reads a HandshakeResponse41 answering a greeting that
// offered the given capabilities.
func parseResponse(p []byte, offered uint32) (*response, error) {
	f := &fields{b: p}
	r := &response{}
	r.caps = uint32(f.int(4, "client_flag"))
	r.maxPkt = uint32(f.int(4, "max_packet_size"))
	r.charset = byte(f.int(1, "character_set"))
	f.bytes(23, "filler")
	if f.err != nil {
		return nil, fmt.Errorf("handshake response: %w", f.err)
	}
	if r.caps&mysql.CLIENT_PROTOCOL_41 == 0 {
		return nil, fmt.Errorf("handshake response: client_flag 0x%08x lacks CLIENT_PROTOCOL_41", r.caps)
	}
	// A client sets only capabilities the server offered. Bit 0 is
	// CLIENT_LONG_PASSWORD to MySQL and CLIENT_MYSQL to MariaDB, whose
	// clients and servers each set it their own way.
	if extra := r.caps &^ offered &^ mysql.CLIENT_LONG_PASSWORD; extra != 0 {
		return nil, fmt.Errorf("handshake response: client_flag claims capabilities 0x%08x that the server did not offer", extra)
	}
	r.user = f.nul("username")
	switch {
	case r.caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		r.auth = f.bytes(f.lenenc("auth_response length"), "auth_response")
	case r.caps&mysql.CLIENT_SECURE_CONNECTION != 0:
		r.auth = f.bytes(f.int(1, "auth_response_length"), "auth_response")
	default:
		r.auth = []byte(f.nul("auth_response"))
	}
	if r.caps&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		r.db = f.nul("database")
	}
	if r.caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
		r.plugin = f.nul("client_plugin_name")
	}
	if r.caps&mysql.CLIENT_CONNECT_ATTRS != 0 {
		start := f.b
		block := &fields{b: f.bytes(f.lenenc("length of all key-values"), "connection attributes")}
		for block.err == nil && len(block.b) > 0 {
			block.bytes(block.lenenc("attribute key length"), "attribute key")
			block.bytes(block.lenenc("attribute value length"), "attribute value")
		}
		if block.err != nil {
			return nil, fmt.Errorf("handshake response: %w", block.err)
		}
		r.attrs = start[:len(start)-len(f.b)]
	}
	if f.err != nil {
		return nil, fmt.Errorf("handshake response: %w", f.err)
	}
	if len(f.b) != 0 {
		return nil, fmt.Errorf("handshake response: %d bytes after the last field its client_flag announces", len(f.b))
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
	r, err := parseResponse(p, offered)
	if err != nil {
		s.refuse(err)
		_ = writePacket(conn, seq+1, errPacket(1043, "08S01", "Bad handshake: "+err.Error()))
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
