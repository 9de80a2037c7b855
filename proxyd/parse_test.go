package proxyd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5/pgproto3"
)

func FuzzParseStartup(f *testing.F) {
	sm, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgProtocol30, Parameters: map[string]string{"user": "app", "database": "orders/app"}}).Encode(nil)
	f.Add(sm[4:])
	f.Add([]byte{0x04, 0xd2, 0x16, 0x2f})
	cr, _ := (&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	f.Add(cr[4:])
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseStartup(body)
		if err != nil {
			return
		}
		switch r.Code {
		case pgProtocol30, pgProtocol32:
			if r.Parameters["user"] == "" {
				t.Fatal("accepted a startup message without a user")
			}
			// What was parsed encodes and parses back the same.
			again, err := (&pgproto3.StartupMessage{ProtocolVersion: r.Code, Parameters: r.Parameters}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := ParseStartup(again[4:])
			if err != nil || len(r2.Parameters) != len(r.Parameters) {
				t.Fatalf("round trip: %v", err)
			}
		case pgCancelRequest:
			if len(r.CancelKey) != len(body)-8 {
				t.Fatal("cancel key length")
			}
		}
	})
}

func FuzzParseHandshakeResponse(f *testing.F) {
	r := &HandshakeResponse{Caps: gatewayCaps, MaxPacket: 1 << 24, Charset: 45, User: "app", Auth: []byte("token\x00"), DB: "orders/shop"}
	f.Add(r.encode(r.Caps, r.Auth, "mysql_clear_password"))
	f.Add(r.sslRequest(r.Caps | mysql.CLIENT_SSL))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseHandshakeResponse(p)
		if err != nil {
			return
		}
		if r.Caps&mysql.CLIENT_PROTOCOL_41 == 0 {
			t.Fatal("accepted a pre-4.1 handshake")
		}
		// Re-encoding with lenenc auth data parses back to the same user,
		// database and auth data.
		caps := r.Caps | mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
		if strings.ContainsRune(r.User, 0) || strings.ContainsRune(r.DB, 0) || strings.ContainsRune(r.Plugin, 0) {
			return
		}
		again, err := ParseHandshakeResponse(r.encode(caps, r.Auth, r.Plugin))
		if err != nil {
			t.Fatalf("re-encoded response does not parse: %v", err)
		}
		if again.User != r.User || !bytes.Equal(again.Auth, r.Auth) || (r.Caps&mysql.CLIENT_CONNECT_WITH_DB != 0 && again.DB != r.DB) {
			t.Fatalf("round trip changed the response: %+v vs %+v", again, r)
		}
	})
}

func FuzzParseMySQLGreeting(f *testing.F) {
	g := &mysqlGreeting{version: "10.11.9-MariaDB", threadID: 42, salt: []byte("abcdefghijklmnopqrst"), caps: gatewayCaps | mysql.CLIENT_SSL, charset: 45, plugin: "mysql_native_password"}
	f.Add(g.encode())
	f.Fuzz(func(t *testing.T, p []byte) {
		g, err := parseMySQLGreeting(p)
		if err != nil || len(g.salt) < 8 || bytes.ContainsRune([]byte(g.version), 0) || strings.ContainsRune(g.plugin, 0) {
			return
		}
		again, err := parseMySQLGreeting(g.encode())
		if err != nil || again.threadID != g.threadID || again.version != g.version || again.caps != g.caps {
			t.Fatalf("round trip: %v %+v vs %+v", err, again, g)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	ok := `{"region":"us-east-1","ca_bundle":"/etc/rds.pem","databases":[{"name":"orders","protocol":"postgres","endpoint":"orders.abc.us-east-1.rds.amazonaws.com:5432","listen":"127.0.0.1:5432"}]}`
	if c, err := ParseConfig([]byte(ok), "proxy.json"); err != nil || c.MaxConnections != DefaultMaxConnections || time.Duration(c.DialTimeout) != DefaultDialTimeout ||
		c.MaxPendingLoginsPerSource != DefaultMaxPendingLogins {
		// A sidecar's one source is its application's pool (go-sql-driver's
		// suite opens 400 at once): no per-source bound below the total.
		t.Fatalf("valid config: %v (per source %d)", err, c.MaxPendingLoginsPerSource)
	}
	auto := `{"region":"us-east-1","ca_bundle":"x","databases":[],"assume_role_arn":"arn:aws:iam::123456789012:role/rdsgate-proxy","auto":{}}`
	if c, err := ParseConfig([]byte(auto), "proxy.json"); err != nil || time.Duration(c.Auto.Interval) != DefaultAutoInterval || c.Auto.BaseRole != c.AssumeRoleARN {
		t.Fatalf("automatic mode without databases: %v", err)
	}
	gw := `{"region":"us-east-1","ca_bundle":"x","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306"}],"gateway":{"listen_mysql":":3306","tls_cert":"c","tls_key":"k","rbac_file":"r","client_ca":"ca"}}`
	if c, err := ParseConfig([]byte(gw), "proxy.json"); err != nil || c.MaxPendingLoginsPerSource != DefaultMaxPendingLoginsPerSource {
		t.Fatalf("gateway config: %v (per source %d)", err, c.MaxPendingLoginsPerSource)
	}
	for name, tc := range map[string]struct{ cfg, want string }{
		"unknown field":            {`{"ca_bundl":"x"}`, `unknown field "ca_bundl"`},
		"no bundle":                {`{"databases":[]}`, "ca_bundle is required"},
		"no databases":             {`{"ca_bundle":"x"}`, "no databases"},
		"bad protocol":             {`{"ca_bundle":"x","region":"us-east-1","databases":[{"name":"a","protocol":"oracle","endpoint":"h:1","listen":"127.0.0.1:1"}]}`, `protocol "oracle" must be postgres or mysql`},
		"no port":                  {`{"ca_bundle":"x","region":"us-east-1","databases":[{"name":"a","protocol":"mysql","endpoint":"host","listen":"127.0.0.1:1"}]}`, "must be host:port"},
		"no region":                {`{"ca_bundle":"x","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:1"}]}`, "no region"},
		"nothing to do":            {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306"}]}`, "nothing to listen on"},
		"same listener":            {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:9"},{"name":"b","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:9"}]}`, "listen 127.0.0.1:9 is also used by a"},
		"bad duration":             {`{"ca_bundle":"x","dial_timeout":"soon"}`, `duration "soon"`},
		"half a gateway":           {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306"}],"gateway":{"listen_mysql":":3306"}}`, "tls_cert, tls_key and rbac_file are required"},
		"gateway without identity": {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306"}],"gateway":{"listen_mysql":":3306","tls_cert":"c","tls_key":"k","rbac_file":"r"}}`, "set client_ca (certificates), iam (IAM identity tokens), or both"},
		"iam without audience":     {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306"}],"gateway":{"listen_mysql":":3306","tls_cert":"c","tls_key":"k","rbac_file":"r","iam":{}}}`, "audience must name this gateway"},
		"auto interval":            {`{"ca_bundle":"x","region":"r","databases":[],"assume_role_arn":"arn:aws:iam::1:role/p","auto":{"interval":"1s"}}`, "interval 1s is shorter than 10s"},
		"auto without base role":   {`{"ca_bundle":"x","region":"r","databases":[],"auto":{}}`, "base_role \"\" must be the proxy's role ARN"},
		"auto base and accounts":   {`{"ca_bundle":"x","region":"r","databases":[],"auto":{"base_role":"arn:aws:iam::1:role/p","accounts":[{"assume_role_arn":"arn:aws:iam::2:role/p"}]}}`, "base_role and accounts"},
		"auto type":                {`{"ca_bundle":"x","region":"r","databases":[],"assume_role_arn":"arn:aws:iam::1:role/p","auto":{"types":["oracle"]}}`, `types: "oracle" is not rds, aurora, rds-proxy, redshift or redshift-serverless`},
		"discovered in a file":     {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:0","discovered":true}]}`, `"discovered" is automatic mode's mark`},
		"fallback not a role":      {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:0","fallback_role_arns":["arn:aws:iam::1:user/u"]}]}`, "is not a role ARN"},
		"address":                  {`{"ca_bundle":"x","region":"r","databases":[{"name":"a","protocol":"mysql","endpoint":"h:3306","listen":"127.0.0.1:0","address":"nowhere"}]}`, "address \"nowhere\" must be host:port"},
	} {
		if _, err := ParseConfig([]byte(tc.cfg), "proxy.json"); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// rbacTable is testdata/rbac/cases.json, shared with the command line's
// access check test.
type rbacTable struct {
	RBAC      json.RawMessage `json:"rbac"`
	Databases []Database      `json:"databases"`
	Cases     []struct {
		Identity, DB, User, Name, Rule, Why string
		Allowed                             bool
	} `json:"cases"`
}

func TestRBACTable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/rbac/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var table rbacTable
	if err := json.Unmarshal(data, &table); err != nil {
		t.Fatal(err)
	}
	r := &RBAC{}
	if err := json.Unmarshal(table.RBAC, r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := r.Warnings(); len(w) != 1 || !strings.Contains(w[0], "the path /teams/ is ignored") {
		t.Errorf("warnings: %q", w)
	}
	for _, c := range table.Cases {
		var db *Database
		for i := range table.Databases {
			if table.Databases[i].Name == c.DB {
				db = &table.Databases[i]
			}
		}
		id, err := ParseIdentity(c.Identity)
		if err != nil {
			t.Fatalf("%s: %v", c.Identity, err)
		}
		d := r.Check(AccessRequest{Identity: id, Database: db, DBUser: c.User, DBName: c.Name})
		if d.Allowed != c.Allowed || d.Rule != c.Rule {
			t.Errorf("%s on %s as %s (%s): %+v", c.Identity, c.DB, c.User, c.Why, d)
		}
	}
}

func TestRBACRefusesWhatItCannotMatch(t *testing.T) {
	t.Parallel()
	for ids, want := range map[string]string{
		"arn:aws:iam::123456789012:role/teams/*": "matches by the role's path, which STS does not report",
		"arn:aws:iam::123456789012:role/*/admin": "matches by the role's path",
		"arn:aws:iam::123456789012:user/ops/bo?": "matches by the user's path",
		"alice":                                  "has no =",
		"CN=alice,XX=1":                          `unknown attribute type "XX"`,
		"CN=a\\":                                 "cannot end with",
		"CN=a\\\\,O=b":                           "",
	} {
		r := &RBAC{Rules: []Rule{{Name: "x", Identities: []string{ids}, Databases: []string{"*"}, DBUsers: []string{"*"}, DBNames: []string{"*"}}}}
		err := r.Validate()
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", ids, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "identities") {
			t.Errorf("%s: %v, want %q", ids, err, want)
		}
		// Rules that did not validate allow nothing.
		d := r.Check(AccessRequest{Identity: IdentityFromARN("arn:aws:iam::123456789012:role/teams"), Database: &Database{Name: "a"}, DBUser: "u", DBName: "n"})
		if d.Allowed {
			t.Errorf("%s: an invalid rule set allowed %+v", ids, d)
		}
	}
	bad := &RBAC{Rules: []Rule{{Name: "x", Identities: []string{"*"}, Databases: []string{"*"}}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "needs db_users and db_names") {
		t.Errorf("allow rule without users: %v", err)
	}
	// db_names on MySQL cannot keep SQL from naming another database.
	cfg := &Config{Databases: []Database{{Name: "ledger", Protocol: ProtocolMySQL}, {Name: "orders", Protocol: ProtocolPostgres}}}
	r := &RBAC{Rules: []Rule{{Name: "billing-only", Identities: []string{"*"}, Databases: []string{"*"}, DBUsers: []string{"app"}, DBNames: []string{"billing"}}}}
	if w := r.Review(cfg); len(w) != 1 || !strings.Contains(w[0], "MySQL database ledger") || !strings.Contains(w[0], "GRANT") {
		t.Errorf("review: %q", w)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	token := "db.example:5432/?Action=connect&DBUser=app&X-Amz-Credential=AKID%2F2026&X-Amz-Signature=abcdef0123"
	for _, in := range []string{
		"password authentication failed: " + token,
		`{"aws_secret_access_key": "wJalrXUtnFEMI"}`,
		"session_token=IQoJb3JpZ2lu",
		"user rdsgate-iam-v1.aHR0cHM6Ly9zdHMuYW1hem9uYXdzLmNvbS8_abcdef0123 is not allowed",
		"user RDSGATE-IAM-V1.aHR0cHM6Ly9zdHMuabcdef0123 cut short",
		"next=https%3A%2F%2Fx%2F%3FX-Amz-Signature%3Dabcdef0123%26",
		"next=https%253A%252F%252Fx%252F%253FX-Amz-Credential%253Dabcdef0123",
		`{"password":"abcdef0123"}`,
	} {
		out := Redact(in)
		if strings.Contains(out, "abcdef0123") || strings.Contains(out, "wJalrXUtnFEMI") || strings.Contains(out, "IQoJb3JpZ2lu") || !strings.Contains(out, "[REDACTED]") {
			t.Errorf("Redact(%q) = %q", in, out)
		}
	}
	// Words are not secrets.
	for _, in := range []string{"password authentication failed for user \"app\"", "the session token expired"} {
		if out := Redact(in); out != in {
			t.Errorf("Redact(%q) = %q", in, out)
		}
	}
}

func TestDialErrorSaysWhatToCheck(t *testing.T) {
	t.Parallel()
	db := &Database{Name: "orders", Endpoint: "127.0.0.1:1"}
	srv := &Server{}
	srv.current.Store(&settings{cfg: &Config{DialTimeout: Duration(time.Second)}})
	s := &session{srv: srv, db: db}
	_, err := s.dial(context.Background())
	var be *backendError
	if !errors.As(err, &be) || !strings.Contains(be.msg, "nothing accepts connections on 127.0.0.1:1: check the port") {
		t.Fatalf("%v", err)
	}
	err = dialError(db, 5*time.Second, &timeoutErr{})
	if !strings.Contains(err.Error(), "security group allows port 1") || !strings.Contains(err.Error(), "nc -zv 127.0.0.1 1") {
		t.Fatalf("%v", err)
	}
	_ = binary.BigEndian
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// FuzzJudgeMySQLQuery: a complete comment in front of a query changes none
// of the gateway's judgement of it (a lexer state that leaks across a
// comment would let a prefix hide a USE or a KILL), and the judgement never
// panics on any bytes.
func FuzzJudgeMySQLQuery(f *testing.F) {
	for _, q := range []string{"USE shop", "select 1; use `other db`", "KILL QUERY 42", "/*!40101 USE x */", "SELECT 'a\\'; USE b; '", "# c\nUSE d",
		"SELECT \"x\"; USE e", "-- x\nKILL 7", "USE"} {
		f.Add([]byte(q))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		v := judgeMySQLQuery(q)
		w := judgeMySQLQuery(append([]byte("/* rdsgate */ "), q...))
		if v.refuse != w.refuse || !slices.Equal(v.use, w.use) || (v.kill == nil) != (w.kill == nil) || (v.kill != nil && *v.kill != *w.kill) {
			t.Fatalf("a leading comment changed the verdict on %q: %+v vs %+v", q, v, w)
		}
	})
}

// FuzzReadMySQLPacket: the packet reader returns exactly the declared
// payload, never more than its limit, and never holds memory for a length
// that was only claimed.
func FuzzReadMySQLPacket(f *testing.F) {
	f.Add([]byte{3, 0, 0, 1, 'a', 'b', 'c'}, 16)
	f.Add([]byte{0xff, 0xff, 0xff, 0}, 16<<10)
	f.Add([]byte{0, 0, 0, 9}, 1)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		seq, p, err := readMySQLPacket(bytes.NewReader(data), limit)
		if err != nil {
			return
		}
		n := int(data[0]) | int(data[1])<<8 | int(data[2])<<16
		if n > limit || len(p) != n || seq != data[3] || !bytes.Equal(p, data[4:4+n]) {
			t.Fatalf("read %d bytes (seq %d) from a packet declaring %d with limit %d", len(p), seq, n, limit)
		}
	})
}

// TestFileErrorsSayWhere: the configuration and the RBAC file are edited by
// hand; an error in them names the line and column (or the line of the
// list item) an editor jumps to.
func TestFileErrorsSayWhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, tc := range map[string]struct{ rbac, want string }{
		"syntax": {"{\"rules\": [\n  {\"name\": \"dev\",\n   \"identities\": [\"*\"]\n   \"databases\": [\"orders\"]}\n]}",
			`rbac.json: line 4, column 4: invalid character '"' after object key:value pair`},
		"unknown field": {"{\"rules\": [\n  {\"name\": \"dev\", \"identites\": [\"*\"], \"databases\": [\"x\"]}\n]}",
			`rbac.json: line 2, column 19: unknown field "identites"`},
		"type": {"{\"rules\": [\n  {\"name\": \"dev\",\n   \"identities\": \"*\", \"databases\": [\"x\"]}\n]}",
			`rbac.json: line 3, column 20: rules.identities must be a list, not string`},
		"rule": {"{\"rules\": [\n  {\"name\": \"dev\", \"identities\": [\"*\"], \"databases\": [\"x\"], \"db_users\": [\"*\"], \"db_names\": [\"*\"]},\n\n  {\"name\": \"ops\",\n   \"identities\": []}\n]}",
			`rbac rules[1] (ops): identities is empty, so the rule matches no one (in ` + dir + `/rule.json at line 4)`},
		"trailing": {"{\"rules\": []}\n{}", `rbac.json: line 2, column 1: more JSON after the end of the object`},
	} {
		file := filepath.Join(dir, name+".json")
		if err := os.WriteFile(file, []byte(tc.rbac), 0o644); err != nil {
			t.Fatal(err)
		}
		want := strings.Replace(tc.want, "rbac.json", file, 1)
		if _, err := LoadRBAC(file); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant %q", name, err, want)
		}
	}
	cfg := "{\"ca_bundle\": \"x\", \"region\": \"us-east-1\",\n \"databases\": [\n  {\"name\": \"a\", \"protocol\": \"mysql\", \"endpoint\": \"h:3306\", \"listen\": \"127.0.0.1:1\"},\n  {\"name\": \"b\", \"protocol\": \"oracle\", \"endpoint\": \"h:1\", \"listen\": \"127.0.0.1:2\"}\n]}"
	if _, err := ParseConfig([]byte(cfg), "proxy.json"); err == nil || !strings.HasPrefix(err.Error(), "proxy.json at line 4: ") || !strings.Contains(err.Error(), `protocol "oracle"`) {
		t.Errorf("config item error: %v", err)
	}
}

// FuzzReadPGStartup: the first bytes a hostile client sends. readStartup
// takes exactly one packet (what follows it is left for the next read),
// never a length outside its bounds, and what it returns parses or is
// refused without a panic.
func FuzzReadPGStartup(f *testing.F) {
	sm, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgProtocol30, Parameters: map[string]string{"user": "app", "database": "orders/app"}}).Encode(nil)
	f.Add(append(sm, 'p', 0, 0, 0, 5, 0))
	f.Add([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 'x'})
	f.Add([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 1, 2, 3, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		body, err := readStartup(r)
		if err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(data))
		if n < 8 || n > maxStartupPacket || len(body) != n-4 || r.Len() != len(data)-n || !bytes.Equal(body, data[4:n]) {
			t.Fatalf("readStartup took %d bytes of %d for a packet of length %d (left %d)", len(body)+4, len(data), n, r.Len())
		}
		if req, err := ParseStartup(body); err == nil && req.Code == pgProtocol30 {
			for k, v := range req.Parameters {
				if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
					t.Fatalf("parameter %q=%q holds a NUL", k, v)
				}
			}
		}
	})
}

// FuzzReadPGMessages: what the proxy reads during a login, the client's
// password message and the server's messages up to ReadyForQuery. Each
// message is taken whole and exactly, lengths are bounded before anything
// is allocated, and the messages the login decodes (ErrorResponse,
// BackendKeyData) are refused, not panicked on, when malformed.
func FuzzReadPGMessages(f *testing.F) {
	pw, _ := (&pgproto3.PasswordMessage{Password: "rdsgate-iam-v1.token"}).Encode(nil)
	f.Add(pw)
	var login []byte
	for _, m := range []pgproto3.BackendMessage{&pgproto3.AuthenticationCleartextPassword{}, &pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "16.4"}, &pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}},
		&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28000", Message: "PAM authentication failed"}, &pgproto3.ReadyForQuery{TxStatus: 'I'}} {
		login, _ = m.Encode(login)
	}
	f.Add(login)
	f.Add([]byte{'E', 0, 0, 0, 5, 'S'})
	f.Add([]byte{'K', 0, 0, 0, 6, 0, 0})
	f.Add([]byte{'p', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if pw, err := readPasswordMessage(r); err == nil {
			n := int(binary.BigEndian.Uint32(data[1:]))
			if data[0] != 'p' || n < 5 || n > 16<<10 || r.Len() != len(data)-n-1 || strings.HasSuffix(pw, "\x00") {
				t.Fatalf("password message of length %d: took %d of %d bytes, password %q", n, len(data)-r.Len(), len(data), pw)
			}
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		off := 0
		for {
			typ, body, raw, err := readMessage(br)
			if err != nil {
				break
			}
			n := int(binary.BigEndian.Uint32(data[off+1:]))
			if n < 4 || n > maxLoginMessage || len(raw) != n+1 || !bytes.Equal(raw, data[off:off+n+1]) || typ != raw[0] || !bytes.Equal(body, raw[5:]) {
				t.Fatalf("message at %d (length %d): raw %d bytes, body %d", off, n, len(raw), len(body))
			}
			off += n + 1
			switch typ {
			case 'E':
				var e pgproto3.ErrorResponse
				_ = e.Decode(body)
			case 'K':
				var k pgproto3.BackendKeyData
				if k.Decode(body) == nil && (len(k.SecretKey) < 4 || len(k.SecretKey) > 256) {
					t.Fatalf("BackendKeyData with a %d-byte key decoded", len(k.SecretKey))
				}
			}
		}
	})
}

// FuzzRBAC: an RBAC file from the fuzzer, and the requests of the shared
// table. Whatever the rules say: an allow names an allow rule that exists,
// removing the deny rules never takes an allow away, and a deny rule for
// everyone, added anywhere, denies everything.
func FuzzRBAC(f *testing.F) {
	data, err := os.ReadFile("testdata/rbac/cases.json")
	if err != nil {
		f.Fatal(err)
	}
	var table rbacTable
	if err := json.Unmarshal(data, &table); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(table.RBAC))
	f.Add([]byte(`{"rules":[{"name":"a","identities":["*"],"databases":["*"],"db_users":["*"],"db_names":["*"]}]}`))
	f.Add([]byte(`{"rules":[{"name":"a","identities":["CN=*,O=dba"],"labels":{"env":"prod"},"db_users":["app?"],"db_names":["*"]},{"name":"d","effect":"deny","identities":["arn:aws:iam::*:role/*"],"databases":["ledger"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &RBAC{}
		if decodeStrict(data, r) != nil || r.Validate() != nil || len(r.Rules) > 50 {
			return
		}
		allows := &RBAC{}
		denyAll := &RBAC{Rules: []Rule{{Name: "deny-everyone", Effect: "deny", Identities: []string{"*"}, Databases: []string{"*"}}}}
		for _, rule := range r.Rules {
			clean := rule
			clean.ids = nil
			if rule.Effect != "deny" {
				allows.Rules = append(allows.Rules, clean)
			}
			denyAll.Rules = append(denyAll.Rules, clean)
		}
		if allows.Validate() != nil || denyAll.Validate() != nil {
			return // a rule valid among others may not be alone (names)
		}
		for _, c := range table.Cases {
			id, err := ParseIdentity(c.Identity)
			if err != nil {
				t.Fatal(err)
			}
			for i := range table.Databases {
				req := AccessRequest{Identity: id, Database: &table.Databases[i], DBUser: c.User, DBName: c.Name}
				d := r.Check(req)
				if d.Allowed {
					i := slices.IndexFunc(r.Rules, func(rule Rule) bool { return rule.Name == d.Rule })
					if i < 0 || r.Rules[i].Effect == "deny" {
						t.Fatalf("%+v allowed by %q, which is not an allow rule", req, d.Rule)
					}
					if !allows.Check(req).Allowed {
						t.Fatalf("%+v: allowed, and denied once the deny rules are gone", req)
					}
				}
				if dd := denyAll.Check(req); dd.Allowed || dd.Rule != "deny-everyone" {
					t.Fatalf("%+v: %+v under a deny rule for everyone", req, dd)
				}
			}
		}
	})
}
