package testenv

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestServers starts both servers and talks to them over TLS with the real
// clients, as the rest of the tests will.
func TestServers(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pg := StartPostgres(t, PostgresOptions{})
		if v := pg.SQL(t, "postgres", "select current_setting('server_version_num')::int >= 150000"); v != "t" {
			t.Fatalf("server version check: %q", v)
		}
		dsn := "host=127.0.0.1 port=" + strconv.Itoa(pg.Port) + " user=postgres dbname=postgres sslmode=verify-full sslrootcert=" + pg.CA.PEMFile
		out, err := exec.Command("psql", "-X", "-A", "-t", dsn, "-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "t" {
			t.Fatalf("psql over TLS: %v %s", err, out)
		}
		out, err = exec.Command("psql", "-X", "host=127.0.0.1 port="+strconv.Itoa(pg.Port)+" user=postgres sslmode=disable", "-c", "select 1").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no encryption") {
			t.Fatalf("plain TCP was not refused: %v %s", err, out)
		}
	})
	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		m := StartMariaDB(t, MariaDBOptions{})
		m.SQL(t, "CREATE USER 'app'@'%' IDENTIFIED BY 'secret'")
		out, err := exec.Command("mariadb", "--no-defaults", "-h127.0.0.1", "-P"+strconv.Itoa(m.Port), "-uapp", "-psecret", "--ssl", "--ssl-ca="+m.CA.PEMFile,
			"--ssl-verify-server-cert", "-N", "-e", "SHOW STATUS LIKE 'Ssl_version'").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "TLSv1.3") && !strings.Contains(string(out), "TLSv1.2") {
			t.Fatalf("mariadb over TLS: %v %s", err, out)
		}
	})
}
