package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ServerDir makes a folder that servers running as their own user can use:
// t.TempDir is private to root.
func ServerDir(t T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Postgres is a PostgreSQL 15 server with TLS on a loopback port.
type Postgres struct {
	Host      string // 127.0.0.1
	Port      int
	SocketDir string
	Dir       string
	CA        *CA
	bin       string
	cred      *syscall.Credential
}

// PostgresOptions change the server's set-up.
type PostgresOptions struct {
	MaxConnections int
	// AllowPlaintext accepts TCP without TLS too, for suites that compare a
	// client straight to the server with the same client through the proxy
	// (which accepts plaintext from clients on its own listeners).
	AllowPlaintext bool
}

// Addr is host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// pgBin finds the PostgreSQL server binaries.
func pgBin(t T) string {
	t.Helper()
	if path, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(path, "--bindir").Output(); err == nil {
			dir := strings.TrimSpace(string(out))
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
				return dir
			}
		}
	}
	for _, dir := range []string{"/usr/lib/postgresql/15/bin", "/usr/local/bin"} {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	t.Fatal("PostgreSQL server binaries (initdb, postgres) not found: install postgresql-15 (.ci/run does)")
	return ""
}

// AsUser is the credential to run a server that refuses root (PostgreSQL,
// pgbouncer) as the named user; nil when not running as root.
func AsUser(t T, name string) *syscall.Credential {
	t.Helper()
	if os.Getuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("running as root, PostgreSQL needs the %q user to run as: %v (create it with useradd --system %s)", name, err, name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// StartPostgres starts a PostgreSQL server in a temporary folder: TLS with a
// certificate from its own test CA, trust authentication over the unix
// socket and over TLS on loopback, and plain TCP refused (as RDS with
// rds.force_ssl). It stops at cleanup.
func StartPostgres(t T, o PostgresOptions) *Postgres {
	t.Helper()
	if o.MaxConnections == 0 {
		o.MaxConnections = 200
	}
	dir := ServerDir(t, "rdsgate-pg-")
	p := &Postgres{Host: "127.0.0.1", Dir: dir, SocketDir: filepath.Join(dir, "sock"), bin: pgBin(t), cred: AsUser(t, "postgres")}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, p.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if p.cred != nil {
			if err := os.Chown(d, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := p.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	p.CA = NewCA(t, certs)
	certFile, keyFile := p.CA.Issue(t, "postgres-server", false, "localhost", "127.0.0.1")
	// PostgreSQL wants its key private to it.
	key := filepath.Join(data, "server.key")
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.cred != nil {
		_ = os.Chown(key, int(p.cred.Uid), int(p.cred.Gid))
	}
	p.Port = FreePort(t)
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = %d
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
log_min_messages = warning
`, p.Port, p.SocketDir, o.MaxConnections, certFile, key)
	appendFile(t, filepath.Join(data, "postgresql.conf"), conf)
	hba := "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
	if o.AllowPlaintext {
		hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
	}
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &LockedBuffer{}
	cmd := p.command("postgres", "-D", data)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, err := p.command("pg_isready", "-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", "postgres").CombinedOutput(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("postgres did not start: %s\n%s", out, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// SQL runs statements as the superuser with psql over the unix socket.
func (p *Postgres) SQL(t T, db, sql string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", p.SocketDir, "-p", strconv.Itoa(p.Port),
		"-U", "postgres", "-d", db, "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// MariaDB is a MariaDB server with TLS on a loopback port.
type MariaDB struct {
	Host   string
	Port   int
	Socket string
	Dir    string
	CA     *CA
}

// MariaDBOptions change the server's set-up.
type MariaDBOptions struct {
	MaxConnections int
	// SkipGrantTables lets anyone in as anyone: for benchmarks that compare
	// transport, not authentication.
	SkipGrantTables bool
}

// Addr is host:port.
func (m *MariaDB) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// StartMariaDB starts a MariaDB server in a temporary folder with TLS from
// its own test CA. It stops at cleanup.
func StartMariaDB(t T, o MariaDBOptions) *MariaDB {
	t.Helper()
	if o.MaxConnections == 0 {
		o.MaxConnections = 300
	}
	for _, bin := range []string{"mariadbd", "mariadb-install-db", "mariadb"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install mariadb-server and mariadb-client (.ci/run does)", bin)
		}
	}
	dir := ServerDir(t, "rdsgate-mariadb-")
	m := &MariaDB{Host: "127.0.0.1", Dir: dir, Socket: filepath.Join(dir, "mysqld.sock")}
	data := filepath.Join(dir, "data")
	// Each server gets its own tmpdir: parallel installs collide in /tmp.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Getuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command("mariadb-install-db", args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	m.CA = NewCA(t, dir)
	certFile, keyFile := m.CA.Issue(t, "mariadb-server", false, "localhost", "127.0.0.1")
	m.Port = FreePort(t)
	srv := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--socket=" + m.Socket, "--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1", "--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--log-error=" + filepath.Join(dir, "error.log"),
		"--ssl-ca=" + m.CA.PEMFile, "--ssl-cert=" + certFile, "--ssl-key=" + keyFile, "--skip-name-resolve",
		"--max-connections=" + strconv.Itoa(o.MaxConnections), "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
		"--skip-log-bin", "--character-set-server=utf8mb4"}
	if os.Getuid() == 0 {
		srv = append(srv, "--user=root")
	}
	if o.SkipGrantTables {
		srv = append(srv, "--skip-grant-tables")
	}
	cmd := exec.Command("mariadbd", srv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := exec.Command("mariadb-admin", "--no-defaults", "--socket="+m.Socket, "-uroot", "ping").Run(); err == nil {
			break
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("mariadb did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m
}

// SQL runs statements as root with the mariadb client over the socket.
func (m *MariaDB) SQL(t T, sql string) string {
	t.Helper()
	out, err := exec.Command("mariadb", "--no-defaults", "--socket="+m.Socket, "-uroot", "-N", "-B", "-e", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// FreePort returns a loopback port nobody listens on.
func FreePort(t T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func appendFile(t T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
