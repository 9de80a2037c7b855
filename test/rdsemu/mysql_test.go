package rdsemu

import (
	"context"
	"encoding/binary"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

func mysqlCLI(s *Server, user, password string, args ...string) (string, error) {
	cmd := exec.Command("mariadb", append([]string{"--no-defaults", "-h127.0.0.1", "-P" + strconv.Itoa(s.Port), "-u" + user, "-p" + password,
		"--ssl", "--ssl-ca=" + s.CAFile, "-N", "-B"}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestMySQLEmulator logs in with the real mariadb client and an SDK token.
func TestMySQLEmulator(t *testing.T) {
	t.Parallel()
	m := testenv.StartMariaDB(t, testenv.MariaDBOptions{})
	keys := &Keys{}
	keys.Add("AKIDEXAMPLE", "secret", "")
	s := MySQL(t, m, "emulator-password", Options{Keys: keys})
	m.SQL(t, "CREATE USER 'app'@'%' IDENTIFIED BY 'emulator-password'; GRANT ALL ON *.* TO 'app'@'%'")
	tok, err := auth.BuildAuthToken(context.Background(), s.Endpoint, "us-east-1", "app", credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""))
	if err != nil {
		t.Fatal(err)
	}
	out, err := mysqlCLI(s, "app", tok, "-e", "SELECT CURRENT_USER(), CONNECTION_ID() > 0")
	if err != nil || out != "app@%\t1" {
		t.Fatalf("login with a token: %v %q", err, out)
	}
	if out, err := mysqlCLI(s, "app", "hunter2", "-e", "SELECT 1"); err == nil || !strings.Contains(out, "Access denied for user 'app'@'127.0.0.1' (using password: YES)") {
		t.Fatalf("bad token: %v %s", err, out)
	}
	cmd := exec.Command("mariadb", "--no-defaults", "-h127.0.0.1", "-P"+strconv.Itoa(s.Port), "-uapp", "-p"+tok, "--skip-ssl", "-e", "SELECT 1")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Access denied") {
		t.Fatalf("without TLS: %v %s", err, out)
	}
}

// TestHandshakeResponseIsReadAsDocumented builds a HandshakeResponse41 by
// the documentation's field order and breaks it one field at a time: each
// break is refused with the field named, so a proxy that writes one wrongly
// fails against the emulator.
func TestHandshakeResponseIsReadAsDocumented(t *testing.T) {
	const offered = mysql.CLIENT_LONG_PASSWORD | mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH |
		mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | mysql.CLIENT_CONNECT_WITH_DB | mysql.CLIENT_CONNECT_ATTRS | mysql.CLIENT_SSL
	build := func(caps uint32, attrs []byte, tail string) []byte {
		p := binary.LittleEndian.AppendUint32(nil, caps)
		p = binary.LittleEndian.AppendUint32(p, 1<<24)
		p = append(p, 45)
		p = append(p, make([]byte, 23)...)
		p = append(p, "app\x00"...)
		p = append(p, 5)
		p = append(p, "token"...)
		p = append(p, "shop\x00"...)
		p = append(p, "mysql_clear_password\x00"...)
		p = append(p, attrs...)
		return append(p, tail...)
	}
	attrs := []byte{byte(2 + 4 + 1 + 5), 4, '_', 'o', 's', 'x', 5, 'l', 'i', 'n', 'u', 'x'}
	attrs[0] = byte(len(attrs) - 1)
	good := build(offered&^mysql.CLIENT_SSL, attrs, "")
	r, err := parseResponse(good, offered)
	if err != nil {
		t.Fatal(err)
	}
	if r.user != "app" || string(r.auth) != "token" || r.db != "shop" || r.plugin != "mysql_clear_password" || string(r.attrs) != string(attrs) || r.charset != 45 {
		t.Fatalf("%+v", r)
	}
	long := append([]byte(nil), attrs...)
	long[0]++
	short := append([]byte(nil), attrs...)
	short[len(short)-6] = 9 // the value claims more than the block holds
	for name, c := range map[string]struct {
		p    []byte
		want string
	}{
		"attributes shorter than declared": {build(offered&^mysql.CLIENT_SSL, long, ""), "connection attributes: 12 bytes declared, 11 left"},
		"a value past its block":           {build(offered&^mysql.CLIENT_SSL, short, ""), "attribute value"},
		"bytes after the last field":       {build(offered&^mysql.CLIENT_SSL, attrs, "x"), "1 bytes after the last field"},
		"an unterminated plugin name":      {slices.Clone(good[:len(good)-len(attrs)-1]), "client_plugin_name: no NUL terminator"},
		"a capability not offered":         {build(offered&^mysql.CLIENT_SSL|mysql.CLIENT_COMPRESS, attrs, ""), "capabilities 0x00000020 that the server did not offer"},
		"the pre-4.1 protocol":             {build(offered&^mysql.CLIENT_SSL&^mysql.CLIENT_PROTOCOL_41, attrs, ""), "lacks CLIENT_PROTOCOL_41"},
		"a NULL for a length":              {append(slices.Clone(good[:36]), 0xfb), "auth_response length: 0xfb is not a length-encoded integer"},
	} {
		if _, err := parseResponse(c.p, offered); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
