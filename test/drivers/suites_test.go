package drivers

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
)

// proxyFor runs rdsgate in sidecar mode in front of one database, with TLS
// for clients from the server's own test CA (so a client that verifies the
// server's name verifies the proxy's the same way), and returns its port.
func proxyFor(t *testing.T, ca *testenv.CA, protocol, name, endpoint string) int {
	t.Helper()
	bin := testenv.BuildRdsgate(t)
	cert, key := ca.Issue(t, "rdsgate-"+name, false, "localhost", "127.0.0.1")
	port, health := testenv.FreePort(t), "127.0.0.1:"+itoa(testenv.FreePort(t))
	cfg := &proxyd.Config{Region: "us-east-1", CABundle: ca.PEMFile, HealthAddress: health, LogLevel: "warn",
		ClientTLSCert: cert, ClientTLSKey: key, MaxConnections: 1000,
		Databases: []proxyd.Database{{Name: name, Protocol: protocol, Endpoint: endpoint, Listen: "127.0.0.1:" + itoa(port)}}}
	testenv.StartProxyProcess(t, bin, cfg, health)
	return port
}

// TestPgxSuite runs pgx's suite (pgx, pgconn, pgtype, pgxpool, stdlib) with
// its own database set-up script.
func TestPgxSuite(t *testing.T) {
	enabled(t)
	dir := fetchSuite(t, pgxModule)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{MaxConnections: 400, AllowPlaintext: true})
	pg.SQL(t, "postgres", "CREATE DATABASE pgx_test")
	setup := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.SocketDir, "-p", strconv.Itoa(pg.Port), "-U", "postgres",
		"-d", "pgx_test", "-f", filepath.Join(dir, "testsetup", "postgresql_setup.sql"))
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("pgx's testsetup/postgresql_setup.sql: %v\n%s", err, out)
	}
	port := proxyFor(t, pg.CA, proxyd.ProtocolPostgres, "pgx_test", pg.Addr())
	env := func(port int) []string {
		conn := "host=127.0.0.1 port=" + itoa(port) + " user=postgres dbname=pgx_test sslmode=verify-full sslrootcert=" + pg.CA.PEMFile
		return []string{"PGX_TEST_DATABASE=" + conn, "PGX_TEST_TCP_CONN_STRING=" + conn, "PGX_TEST_TLS_CONN_STRING=" + conn}
	}
	compare(t, "pgx", dir, env(pg.Port), env(port), "", "./...")
}

// TestGoSQLDriverMySQLSuite runs go-sql-driver/mysql's suite. MariaDB skips
// its grant tables so that the proxy's IAM token is accepted as a password:
// the comparison is of the wire, not of authentication.
func TestGoSQLDriverMySQLSuite(t *testing.T) {
	enabled(t)
	dir := fetchSuite(t, mysqlModule)
	my := testenv.StartMariaDB(t, testenv.MariaDBOptions{SkipGrantTables: true, MaxConnections: 600})
	my.SQL(t, "CREATE DATABASE gotest")
	port := proxyFor(t, my.CA, proxyd.ProtocolMySQL, "gotest", my.Addr())
	env := func(port int) []string {
		return []string{"MYSQL_TEST_USER=root", "MYSQL_TEST_PASS=", "MYSQL_TEST_PROT=tcp", "MYSQL_TEST_ADDR=127.0.0.1:" + itoa(port),
			"MYSQL_TEST_DBNAME=gotest", "MYSQL_TEST_CONCURRENT=1"}
	}
	// TestConnectorReturnsTimeout dials 1.1.1.1:1234 and expects a timeout;
	// where outbound connections are intercepted (CI sandboxes) the dial
	// succeeds and the driver panics, which ends the whole package run.
	compare(t, "go-sql-driver/mysql", dir, env(my.Port), env(port), "^TestConnectorReturnsTimeout$", ".")
}
