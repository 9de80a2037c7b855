package rdsemu

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

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
