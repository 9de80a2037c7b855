package proxyd

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

const (
	accessKey = "AKIDPROXYTEST"
	secretKey = "proxy-test-secret-key"
	// emuPassword is what the MySQL emulator logs into MariaDB with.
	emuPassword = "emulator-password"
)

// env is a proxy in front of real PostgreSQL and MariaDB servers behind the
// RDS emulator, with its logs captured.
type env struct {
	t      *testing.T
	pg     *testenv.Postgres
	pgEmu  *rdsemu.Server
	my     *testenv.MariaDB
	myEmu  *rdsemu.Server
	keys   *rdsemu.Keys
	srv    *Server
	cfg    *Config
	logs   *testenv.LockedBuffer
	bundle string
	offset time.Duration // how far the emulators' clock is ahead
	nowMu  sync.Mutex
}

// advance moves the emulators' clock, as if time passed at RDS.
func (e *env) advance(d time.Duration) {
	e.nowMu.Lock()
	e.offset += d
	e.nowMu.Unlock()
}

func (e *env) emuNow() time.Time {
	e.nowMu.Lock()
	defer e.nowMu.Unlock()
	return time.Now().Add(e.offset)
}

// newEnv starts the servers and emulators; mutate may change the proxy's
// configuration before it starts.
func newEnv(t *testing.T, mutate func(*env, *Config)) *env {
	t.Helper()
	e := &env{t: t, keys: &rdsemu.Keys{}, logs: &testenv.LockedBuffer{}}
	e.keys.Add(accessKey, secretKey, "")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.pg = testenv.StartPostgres(t, testenv.PostgresOptions{}) }()
	go func() { defer wg.Done(); e.my = testenv.StartMariaDB(t, testenv.MariaDBOptions{}) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e.pgEmu = rdsemu.Postgres(t, e.pg, rdsemu.Options{Keys: e.keys, Now: e.emuNow})
	e.myEmu = rdsemu.MySQL(t, e.my, emuPassword, rdsemu.Options{Keys: e.keys, Now: e.emuNow})
	e.pg.SQL(t, "postgres", `CREATE USER app; GRANT rds_iam TO app; CREATE USER other; GRANT rds_iam TO other; CREATE USER nogrant;
		CREATE TABLE items(id int primary key, name text); GRANT ALL ON items TO app;
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;`)
	e.my.SQL(t, `CREATE USER 'app'@'%' IDENTIFIED BY '`+emuPassword+`'; GRANT ALL ON *.* TO 'app'@'%';
		CREATE USER 'other'@'%' IDENTIFIED BY '`+emuPassword+`'; GRANT ALL ON *.* TO 'other'@'%';
		CREATE DATABASE shop; CREATE TABLE shop.items(id int primary key, name text);`)
	// One CA bundle for both, as the RDS global bundle is.
	pgCA, _ := os.ReadFile(e.pg.CA.PEMFile)
	myCA, _ := os.ReadFile(e.my.CA.PEMFile)
	e.bundle = filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(e.bundle, append(pgCA, myCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg = &Config{
		Region:        "us-east-1",
		CABundle:      e.bundle,
		HealthAddress: "127.0.0.1:0",
		DialTimeout:   Duration(5 * time.Second),
		DrainTimeout:  Duration(2 * time.Second),
		Databases: []Database{
			{Name: "pg", Protocol: ProtocolPostgres, Endpoint: e.pgEmu.Endpoint, Listen: "127.0.0.1:0", DBUsers: []string{"app", "other", "nogrant"}},
			{Name: "my", Protocol: ProtocolMySQL, Endpoint: e.myEmu.Endpoint, Listen: "127.0.0.1:0", DBUsers: []string{"app", "other"}},
		},
	}
	if mutate != nil {
		mutate(e, e.cfg)
	}
	e.start()
	return e
}

func (e *env) awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: awscreds.NewStaticCredentialsProvider(accessKey, secretKey, "")}
}

func (e *env) start(opts ...Option) {
	t := e.t
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(context.Background(), e.cfg, append([]Option{WithLogger(logger), WithAWSConfig(e.awsConfig())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(func() {
		srv.Close()
		// No log line may carry a token or a key, whatever happened.
		logs := e.logs.String()
		for _, secret := range []string{"X-Amz-Signature", "X-Amz-Credential", secretKey} {
			if strings.Contains(logs, secret) {
				t.Errorf("a log line contains %q", secret)
			}
		}
	})
}

// pgDSN is a libpq connection string to the proxy's listener of db.
func (e *env) pgDSN(db, user, dbname string) string {
	host, port := splitAddr(e.t, e.srv.Addr(db))
	return "host=" + host + " port=" + port + " user=" + user + " dbname=" + dbname + " sslmode=disable connect_timeout=10"
}

// pgConn is a pgx connection as app to the postgres database of db's
// listener, closed when the test ends.
func (e *env) pgConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.pgDSN(db, "app", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func splitAddr(t *testing.T, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// psql runs the real psql client.
func psql(t *testing.T, dsn string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("psql", append([]string{"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn}, args...)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mysqlCLI runs the real mariadb client against a proxy listener.
func mysqlCLI(t *testing.T, addr, user string, args ...string) (string, error) {
	t.Helper()
	host, port := splitAddr(t, addr)
	cmd := exec.Command("mariadb", append([]string{"--no-defaults", "-h" + host, "-P" + port, "-u" + user, "-N", "-B", "--connect-timeout=10"}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func itoa(n int) string { return strconv.Itoa(n) }
