package rdsemu

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

func psql(s *Server, user, password string, args ...string) (string, error) {
	host, _, _ := strings.Cut(s.Endpoint, ":")
	dsn := "host=" + host + " hostaddr=127.0.0.1 port=" + strconv.Itoa(s.Port) + " user=" + user + " dbname=postgres sslmode=verify-full sslrootcert=" + s.CAFile
	cmd := exec.Command("psql", append([]string{"-X", "-A", "-t", dsn}, args...)...)
	cmd.Env = append(cmd.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestPostgresEmulator logs in with the real psql client and an SDK token,
// and checks what RDS refuses.
func TestPostgresEmulator(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	keys := &Keys{}
	keys.Add("AKIDEXAMPLE", "secret", "")
	var skew atomic.Int64 // how far the emulator's clock is ahead
	s := Postgres(t, pg, Options{Keys: keys, Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	pg.SQL(t, "postgres", `CREATE USER app; GRANT rds_iam TO app; CREATE USER nopriv`)
	token := func(user string) string {
		tok, err := auth.BuildAuthToken(context.Background(), s.Endpoint, "us-east-1", user, credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	out, err := psql(s, "app", token("app"), "-c", "select current_user")
	if err != nil || out != "app" {
		t.Fatalf("login with a token: %v %s", err, out)
	}
	for name, tc := range map[string]struct{ user, pw, want string }{
		"wrong token":    {"app", "hunter2", `PAM authentication failed for user "app"`},
		"other user's":   {"app", token("nopriv"), `PAM authentication failed for user "app"`},
		"not in rds_iam": {"nopriv", token("nopriv"), `password authentication failed for user "nopriv"`},
	} {
		if out, err := psql(s, tc.user, tc.pw, "-c", "select 1"); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v %s, want %q", name, err, out, tc.want)
		}
	}
	skew.Store(int64(16 * time.Minute))
	if out, err := psql(s, "app", token("app"), "-c", "select 1"); err == nil || !strings.Contains(s.LastRefusal(), "expired") {
		t.Errorf("expired token: %v %s (%s)", err, out, s.LastRefusal())
	}
	host, _, _ := strings.Cut(s.Endpoint, ":")
	out2, err := exec.Command("psql", "-X", "host="+host+" port="+strconv.Itoa(s.Port)+" user=app sslmode=disable", "-c", "select 1").CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "no encryption") {
		t.Errorf("plain connection: %v %s", err, out2)
	}
}
