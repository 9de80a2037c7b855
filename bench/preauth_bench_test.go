package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
)

// BenchmarkPreAuthFlood attacks a gateway before login, the way a security
// review did, and compares this checkout with an older version side by side
// (BENCH_BASELINE_REF, default the last commit before the gateway was
// hardened; "" skips it):
//
//		go test ./bench -run '^$' -bench PreAuthFlood -benchtime 1x -v
//
//	  - MySQL: BENCH_FLOOD (1,000) connections, from ten loopback addresses,
//	    each claiming a 1 MiB first packet and sending one byte of it: the
//	    gateway's RSS per pre-auth connection, and RSS 5s after they close;
//	  - PostgreSQL: a one-source flood of max_connections+50 connections that
//	    send nothing (max_connections set to 2,000 for both): can a client
//	    with a valid certificate still log in, and what does /readiness say;
//	  - how many pre-auth connections are held from one source and in all.
func BenchmarkPreAuthFlood(b *testing.B) {
	flood := envInt("BENCH_FLOOD", 1000)
	dir := b.TempDir()
	pg := testenv.StartPostgres(b, testenv.PostgresOptions{})
	ca := testenv.NewCA(b, dir)
	serverCert, serverKey := ca.Issue(b, "gateway", false, "localhost", "127.0.0.1")
	clientCert, clientKey := ca.Issue(b, "bench", true)
	if err := os.Chmod(clientKey, 0o600); err != nil {
		b.Fatal(err)
	}
	rbac := filepath.Join(dir, "rbac.json")
	if err := os.WriteFile(rbac, []byte(`{"rules":[{"name":"bench","identities":["CN=bench"],"databases":["*"],"db_users":["postgres"],"db_names":["*"]}]}`), 0o644); err != nil {
		b.Fatal(err)
	}
	binaries := []struct{ name, path string }{{"rdsgate", testenv.BuildRdsgate(b)}}
	ref := os.Getenv("BENCH_BASELINE_REF")
	if _, set := os.LookupEnv("BENCH_BASELINE_REF"); !set {
		ref = "ee93dab"
	}
	if ref != "" {
		if old, err := buildAt(b, ref); err != nil {
			b.Logf("no baseline: %v", err)
		} else {
			binaries = append(binaries, struct{ name, path string }{"rdsgate@" + ref, old})
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-18s %12s %14s %18s %14s %18s %22s %12s\n", "version", "RSS idle KiB", "RSS 1MiB-claim", "KiB/1MiB-claim conn", "RSS after KiB",
		"KiB/silent conn", "client in during flood", "readiness")
	for _, bin := range binaries {
		pgPort, myPort, health := testenv.FreePort(b), testenv.FreePort(b), "127.0.0.1:"+itoa(testenv.FreePort(b))
		cfg := &proxyd.Config{Region: "us-east-1", CABundle: pg.CA.PEMFile, HealthAddress: health, LogLevel: "error", MaxConnections: 2000,
			Databases: []proxyd.Database{{Name: "pg", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr()}},
			Gateway: &proxyd.Gateway{ListenPostgres: "127.0.0.1:" + itoa(pgPort), ListenMySQL: "127.0.0.1:" + itoa(myPort),
				TLSCert: serverCert, TLSKey: serverKey, ClientCA: ca.PEMFile, RBACFile: rbac}}
		pid, _ := startProxy(b, bin.path, cfg)
		legit := func() bool {
			dsn := fmt.Sprintf("host=localhost hostaddr=127.0.0.1 port=%d user=postgres dbname=pg/postgres sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s connect_timeout=10",
				pgPort, ca.PEMFile, clientCert, clientKey)
			out, err := exec.Command("psql", "-X", "-A", "-t", dsn, "-c", "select 1").CombinedOutput()
			return err == nil && strings.TrimSpace(string(out)) == "1"
		}
		if !legit() {
			b.Fatalf("%s: a client cannot log in before any flood", bin.name)
		}
		idle := rssKiB(b, pid)

		// MySQL: first packets that claim 1 MiB.
		chunk := make([]byte, 256<<10)
		var conns []net.Conn
		for i := range flood {
			from := fmt.Sprintf("127.0.0.%d", 2+i%10)
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}).Dial("tcp", "127.0.0.1:"+itoa(myPort))
			if err != nil {
				b.Fatalf("flood: %v", err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			greeting := make([]byte, 4096)
			_, _ = c.Read(greeting)
			claim := 1<<20 - 1
			_, _ = c.Write([]byte{byte(claim), byte(claim >> 8), byte(claim >> 16), 1})
			// A quarter of what it claims, and then nothing: the proxy
			// must not hold it.
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write(chunk)
			conns = append(conns, c)
		}
		time.Sleep(2 * time.Second) // let the proxy read what was sent
		flooded := rssKiB(b, pid)
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(5 * time.Second)
		after := rssKiB(b, pid)

		// PostgreSQL: pre-auth connections that send nothing, from ten
		// addresses: what each held one costs.
		conns = conns[:0]
		before := rssKiB(b, pid)
		for i := range flood {
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 2+i%10))}, Timeout: 10 * time.Second}).Dial("tcp", "127.0.0.1:"+itoa(pgPort))
			if err != nil {
				b.Fatalf("flood: %v", err)
			}
			conns = append(conns, c)
		}
		time.Sleep(2 * time.Second)
		silent := float64(rssKiB(b, pid)-before) / float64(flood)
		for _, c := range conns {
			c.Close()
		}

		// PostgreSQL: one source, max_connections+50 connections that send nothing.
		conns = conns[:0]
		for range cfg.MaxConnections + 50 {
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.20")}, Timeout: 10 * time.Second}).Dial("tcp", "127.0.0.1:"+itoa(pgPort))
			if err != nil {
				b.Fatalf("flood: %v", err)
			}
			conns = append(conns, c)
		}
		time.Sleep(time.Second)
		in := legit()
		readiness := "-"
		if resp, err := http.Get("http://" + health + "/readiness"); err == nil {
			readiness = resp.Status
			resp.Body.Close()
		}
		for _, c := range conns {
			c.Close()
		}
		perConn := float64(flooded-idle) / float64(flood)
		fmt.Fprintf(&sb, "%-18s %12d %14d %18.1f %14d %18.1f %22v %12s\n", bin.name, idle, flooded, perConn, after, silent, in, readiness)
		if bin.name == "rdsgate" {
			b.ReportMetric(perConn, "KiB/pre-auth-conn")
			b.ReportMetric(float64(after), "KiB-RSS-after-flood")
			b.ReportMetric(silent, "KiB/silent-pre-auth-conn")
		}
	}
	fmt.Fprintf(&sb, "\nthis checkout holds at most %d pre-auth connections from one address and %d in all (max_pending_logins_per_source, max_pending_logins);\n"+
		"beyond them connections are refused at accept; logged-in sessions are bounded apart by max_connections.\n",
		proxyd.DefaultMaxPendingLoginsPerSource, proxyd.DefaultMaxPendingLogins)
	b.Log(sb.String())
	fmt.Print(sb.String())
}

// buildAt builds the rdsgate command of an older commit, from a worktree.
func buildAt(b *testing.B, ref string) (string, error) {
	b.Helper()
	tree := filepath.Join(b.TempDir(), "baseline")
	if out, err := exec.Command("git", "-C", "..", "worktree", "add", "--detach", tree, ref).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %v: %s", ref, err, out)
	}
	b.Cleanup(func() { _ = exec.Command("git", "-C", "..", "worktree", "remove", "--force", tree).Run() })
	return testenv.BuildRdsgate(b, tree), nil
}
