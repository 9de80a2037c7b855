// Package bench compares the rdsgate proxy with a direct connection and with
// pgbouncer, side by side in one run, on the same machine:
//
//	make bench-proxy   (go test ./bench -run '^$' -bench Proxy -benchtime 1x -v)
//
// PostgreSQL: pgbench select-only and the default (TPC-B like) mix with 8
// clients, directly over TLS, through rdsgate (plain on loopback to the
// proxy, verify-full TLS from the proxy to the server) and through pgbouncer
// in session mode (TLS to the server); new connections per second with
// pgbench -C. MySQL: sysbench oltp_read_only with 8 threads directly over TLS,
// through rdsgate and through HAProxy forwarding the client's TLS (the floor:
// a hop that does no work of its own). Query cancels while pgbench keeps the server busy:
// how many succeed and how long they take, directly, through rdsgate and
// through pgbouncer. Memory: 1,000 idle clients held through the proxy.
// Every number is reported with its ratio to the direct connection; nothing
// here asserts a time, because these machines are shared. BENCH_PIN=1 runs
// the database servers on CPU 0 and everything else on the other CPUs, as
// when the database is RDS on its own host; BENCH_ROUNDS=3 runs every
// workload three times, the targets taking turns, and reports medians.
package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// want reports whether a workload is in BENCH_WORKLOADS (all when unset):
// select, tpcb, connect, sysbench, cancel, idle.
func want(w string) bool {
	list := os.Getenv("BENCH_WORKLOADS")
	return list == "" || strings.Contains(","+list+",", ","+w+",")
}

var (
	seconds     = envInt("BENCH_SECONDS", 15)
	clients     = envInt("BENCH_CLIENTS", 8)
	idleClients = envInt("BENCH_IDLE_CLIENTS", 1000)
)

type row struct {
	workload, target string
	tps, latencyMS   float64
	// cpuUS is the proxy process's CPU time per transaction (user and
	// system), a steadier measure of its work per message than tps.
	cpuUS float64
}

// cpuTicks reads a process's user and system time in clock ticks.
func cpuTicks(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return u + st
}

const ticksPerSecond = 100

// startProxy runs the rdsgate binary with a configuration, as a separate
// process like pgbouncer, and returns its pid and health address.
func startProxy(b *testing.B, bin string, cfg *proxyd.Config) (int, string) {
	b.Helper()
	var env []string
	if p := os.Getenv("BENCH_PROXY_GOMAXPROCS"); p != "" {
		env = append(env, "GOMAXPROCS="+p)
	}
	p := testenv.StartProxyProcess(b, bin, cfg, cfg.HealthAddress, env...)
	return p.PID, p.Health
}

func startPgbouncer(b *testing.B, pg *testenv.Postgres) (int, int) {
	b.Helper()
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		b.Fatal("pgbouncer not found: apt-get install pgbouncer")
	}
	dir := testenv.ServerDir(b, "rdsgate-pgbouncer-")
	port := testenv.FreePort(b)
	ini := fmt.Sprintf(`[databases]
postgres = host=127.0.0.1 port=%d dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = session
max_client_conn = 4000
default_pool_size = 400
server_tls_sslmode = verify-full
server_tls_ca_file = %s
ignore_startup_parameters = extra_float_digits
logfile = %s/pgbouncer.log
`, pg.Port, port, dir, pg.CA.PEMFile, dir)
	for name, body := range map[string]string{"pgbouncer.ini": ini, "userlist.txt": `"postgres" ""` + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command("pgbouncer", filepath.Join(dir, "pgbouncer.ini"))
	if cred := testenv.AsUser(b, "postgres"); cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		_ = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.Command("psql", "-X", "-A", "-t", pgDSN(port, false, ""), "-c", "select 1").CombinedOutput(); err == nil {
			break
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			b.Fatalf("pgbouncer did not start: %s\n%s", out, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return port, cmd.Process.Pid
}

// startHAProxy runs HAProxy in TCP mode in front of a server: it forwards
// bytes, so the client's TLS goes through it to the server untouched. It is
// the cheapest hop a proxy can be (C, one event loop per core, no TLS of its
// own, splice where it can), the floor for what any proxy between client and
// server costs on this machine. Returns 0 when HAProxy is not installed.
func startHAProxy(b *testing.B, backend string) (port, pid int) {
	b.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		fmt.Println("haproxy not found (scripts/install-deps.sh --bench installs it): its row is left out")
		return 0, 0
	}
	dir := b.TempDir()
	port = testenv.FreePort(b)
	cfg := fmt.Sprintf(`global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen db
  bind 127.0.0.1:%d
  server db %s
`, port, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", "127.0.0.1:"+itoa(port)); err == nil {
			c.Close()
			return port, cmd.Process.Pid
		}
		select {
		case err := <-exited:
			b.Fatalf("haproxy exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatal("haproxy did not listen within 10s")
		}
	}
}

// pinServers models the database on its own host, as RDS is: the servers
// get CPU 0 and this process, and everything it starts from now on (the
// proxies, pgbouncer, HAProxy, pgbench, sysbench), the other CPUs. Without
// it (the default) every process shares every CPU, and a proxy's hop is
// paid for twice: in its own work and in the CPU the server no longer gets;
// on two cores that costs even HAProxy, forwarding bytes, a third of direct.
// With it, the client's own TLS is what limits a direct connection.
func pinServers(b *testing.B, dirs ...string) {
	b.Helper()
	rest := "1-" + itoa(runtime.NumCPU()-1)
	for _, dir := range dirs {
		out, err := exec.Command("pgrep", "-f", dir).Output()
		if err != nil {
			b.Fatalf("pgrep -f %s: %v", dir, err)
		}
		for _, pid := range strings.Fields(string(out)) {
			if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", pid).CombinedOutput(); err != nil {
				b.Fatalf("taskset %s: %v\n%s", pid, err, out)
			}
		}
	}
	if out, err := exec.Command("taskset", "-a", "-p", "-c", rest, itoa(os.Getpid())).CombinedOutput(); err != nil {
		b.Fatalf("taskset: %v\n%s", err, out)
	}
	fmt.Printf("pinned: database servers on CPU 0, clients and proxies on CPUs %s\n", rest)
}

// target is one way to reach a server: directly or through a proxy (pid,
// whose CPU time is counted), by a PostgreSQL DSN or sysbench arguments.
type target struct {
	name string
	dsn  string
	args []string
	pid  int
}

// rounds is how many times each workload runs against each target; the
// targets take turns, starting one further on each round, so a slow spell
// of a shared machine falls on all of them, and each row is the median.
var rounds = envInt("BENCH_ROUNDS", 1)

// measure runs a workload against every target, rounds times, and returns a
// row per target: the median by throughput. BENCH_STRACE=WORKLOAD counts
// the proxies' system calls for 4 s of that workload's first round into
// $TMPDIR/strace-TARGET-WORKLOAD.txt; BENCH_PROFILE does the same for a CPU
// profile of rdsgate (BENCH_PROFILE_WORKLOAD names the workload).
func measure(b *testing.B, key, name, health string, targets []target, run func(target) (tps, latency float64)) []row {
	b.Helper()
	runs := make([][]row, len(targets))
	for round := range rounds {
		for k := range targets {
			i := (k + round) % len(targets)
			tg := targets[i]
			if profile := os.Getenv("BENCH_PROFILE"); profile != "" && tg.name == "rdsgate" && key == os.Getenv("BENCH_PROFILE_WORKLOAD") && round == 0 {
				go profileProxy(health, profile)
			}
			if os.Getenv("BENCH_STRACE") != "" && tg.pid != 0 && key == os.Getenv("BENCH_STRACE") && round == 0 {
				// Count the proxy's system calls for a few seconds.
				go func() {
					time.Sleep(2 * time.Second)
					out := filepath.Join(os.TempDir(), "strace-"+tg.name+"-"+key+".txt")
					_ = exec.Command("timeout", "-s", "INT", "4", "strace", "-c", "-f", "-p", itoa(tg.pid), "-o", out).Run()
				}()
			}
			var t0 float64
			if tg.pid != 0 {
				t0 = cpuTicks(b, tg.pid)
			}
			tps, lat := run(tg)
			r := row{workload: name, target: tg.name, tps: tps, latencyMS: lat}
			if tg.pid != 0 {
				r.cpuUS = (cpuTicks(b, tg.pid) - t0) / ticksPerSecond * 1e6 / (tps * float64(seconds))
			}
			runs[i] = append(runs[i], r)
			fmt.Printf("%-42s %-20s %12.1f tps %8.3f ms %8.1f µs CPU/txn\n", name, tg.name, tps, lat, r.cpuUS)
		}
	}
	out := make([]row, len(targets))
	for i, rs := range runs {
		slices.SortFunc(rs, func(a, b row) int { return cmp.Compare(a.tps, b.tps) })
		out[i] = rs[len(rs)/2]
	}
	return out
}

func pgDSN(port int, tls bool, ca string) string {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", port)
	if tls {
		return dsn + " sslmode=verify-full sslrootcert=" + ca
	}
	return dsn + " sslmode=disable"
}

var (
	reTPS     = regexp.MustCompile(`tps = ([0-9.]+) \((?:without initial connection time|including reconnection times)\)`)
	reLatency = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

func pgbench(b *testing.B, dsn string, args ...string) (tps, latency float64) {
	b.Helper()
	cmd := exec.Command("pgbench", append([]string{"-n", "-c", itoa(clients), "-j", "2", "-T", itoa(seconds)}, append(args, dsn)...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
	m, l := reTPS.FindSubmatch(out), reLatency.FindSubmatch(out)
	if m == nil || l == nil {
		b.Fatalf("pgbench output:\n%s", out)
	}
	tps, _ = strconv.ParseFloat(string(m[1]), 64)
	latency, _ = strconv.ParseFloat(string(l[1]), 64)
	return tps, latency
}

var (
	reSysTPS     = regexp.MustCompile(`transactions:\s+\d+\s+\(([0-9.]+) per sec\.\)`)
	reSysLatency = regexp.MustCompile(`avg:\s+([0-9.]+)`)
)

// sysbenchDir holds the files sysbench 1.0's --mysql-ssl=on reads from its
// working directory: cacert.pem, client-cert.pem and client-key.pem.
var sysbenchDir string

func sysbench(b *testing.B, args ...string) (tps, latency float64) {
	b.Helper()
	cmd := exec.Command("sysbench", append([]string{"oltp_read_only", "--db-driver=mysql", "--mysql-user=root", "--mysql-db=sbtest",
		"--tables=4", "--table-size=10000", "--threads=" + itoa(clients), "--time=" + itoa(seconds)}, append(args, "run")...)...)
	cmd.Dir = sysbenchDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("sysbench %v: %v\n%s", args, err, out)
	}
	m, l := reSysTPS.FindSubmatch(out), reSysLatency.FindSubmatch(out)
	if m == nil || l == nil {
		b.Fatalf("sysbench output:\n%s", out)
	}
	tps, _ = strconv.ParseFloat(string(m[1]), 64)
	latency, _ = strconv.ParseFloat(string(l[1]), 64)
	return tps, latency
}

func itoa(n int) string { return strconv.Itoa(n) }

func rssKiB(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(data)
	v, _ := strconv.Atoi(string(m[1]))
	return v
}

func metric(b *testing.B, health, name string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + health + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func BenchmarkProxy(b *testing.B) {
	bin := testenv.BuildRdsgate(b)
	pg := testenv.StartPostgres(b, testenv.PostgresOptions{MaxConnections: idleClients + 200})
	my := testenv.StartMariaDB(b, testenv.MariaDBOptions{SkipGrantTables: true, MaxConnections: 400})
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", "10", "-h", pg.SocketDir, "-p", itoa(pg.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	my.SQL(b, "CREATE DATABASE sbtest")
	if out, err := exec.Command("sysbench", "oltp_read_only", "--db-driver=mysql", "--mysql-socket="+my.Socket, "--mysql-user=root", "--mysql-db=sbtest",
		"--tables=4", "--table-size=10000", "prepare").CombinedOutput(); err != nil {
		b.Fatalf("sysbench prepare: %v\n%s", err, out)
	}
	sysbenchDir = b.TempDir()
	cert, key := my.CA.Issue(b, "sysbench-client", true)
	for dst, src := range map[string]string{"cacert.pem": my.CA.PEMFile, "client-cert.pem": cert, "client-key.pem": key} {
		data, _ := os.ReadFile(src)
		if err := os.WriteFile(filepath.Join(sysbenchDir, dst), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if os.Getenv("BENCH_PIN") != "" {
		if runtime.NumCPU() < 2 {
			b.Fatal("BENCH_PIN needs at least two CPUs")
		}
		pinServers(b, pg.Dir, my.Dir)
	}
	bouncer, bouncerPID := startPgbouncer(b, pg)
	bundle := filepath.Join(b.TempDir(), "bundle.pem")
	pgCA, _ := os.ReadFile(pg.CA.PEMFile)
	myCA, _ := os.ReadFile(my.CA.PEMFile)
	if err := os.WriteFile(bundle, append(pgCA, myCA...), 0o644); err != nil {
		b.Fatal(err)
	}
	pgPort, myPort, healthPort, reusePort := testenv.FreePort(b), testenv.FreePort(b), testenv.FreePort(b), testenv.FreePort(b)
	// A sidecar can also listen on unix sockets: libpq finds one as
	// <dir>/.s.PGSQL.<port>, mysql and sysbench take its path.
	sockDir := testenv.ServerDir(b, "rdsgate-sock-")
	sockPort := testenv.FreePort(b)
	cfg := &proxyd.Config{Region: "us-east-1", CABundle: bundle, HealthAddress: "127.0.0.1:" + itoa(healthPort), LogLevel: "warn", Pprof: true,
		Databases: []proxyd.Database{
			{Name: "pg", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr(), Listen: "127.0.0.1:" + itoa(pgPort)},
			{Name: "pg-socket", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr(), Listen: "unix:" + filepath.Join(sockDir, ".s.PGSQL."+itoa(sockPort))},
			{Name: "my", Protocol: proxyd.ProtocolMySQL, Endpoint: my.Addr(), Listen: "127.0.0.1:" + itoa(myPort)},
			{Name: "my-socket", Protocol: proxyd.ProtocolMySQL, Endpoint: my.Addr(), Listen: "unix:" + filepath.Join(sockDir, "my.sock")},
			{Name: "pg-reuse", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr(), Listen: "127.0.0.1:" + itoa(reusePort), ReuseConnections: true},
		}}
	pid, health := startProxy(b, bin, cfg)
	// The older relay, a goroutine per direction, as a second baseline.
	oldCfg := *cfg
	oldPG, oldHealth := testenv.FreePort(b), testenv.FreePort(b)
	oldCfg.NoEventLoop, oldCfg.HealthAddress, oldCfg.Pprof = true, "127.0.0.1:"+itoa(oldHealth), false
	oldCfg.Databases = []proxyd.Database{{Name: "pg", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr(), Listen: "127.0.0.1:" + itoa(oldPG)}}
	oldPID, _ := startProxy(b, bin, &oldCfg)
	// More proxies to compare, each serving pg and my: BENCH_LOOPS=N, one
	// relaying with N event loops; BENCH_BASELINE_REF=REF, the proxy built
	// from that git revision (an older version, side by side in this run).
	type extraProxy struct {
		name           string
		pid            int
		pgPort, myPort int
	}
	var extras []extraProxy
	addExtra := func(name, bin string, loops int) {
		c := oldCfg
		e := extraProxy{name: name, pgPort: testenv.FreePort(b), myPort: testenv.FreePort(b)}
		c.NoEventLoop, c.EventLoops, c.HealthAddress = false, loops, "127.0.0.1:"+itoa(testenv.FreePort(b))
		c.Databases = []proxyd.Database{
			{Name: "pg", Protocol: proxyd.ProtocolPostgres, Endpoint: pg.Addr(), Listen: "127.0.0.1:" + itoa(e.pgPort)},
			{Name: "my", Protocol: proxyd.ProtocolMySQL, Endpoint: my.Addr(), Listen: "127.0.0.1:" + itoa(e.myPort)},
		}
		e.pid, _ = startProxy(b, bin, &c)
		extras = append(extras, e)
	}
	if loops := envInt("BENCH_LOOPS", 0); loops > 0 {
		addExtra(fmt.Sprintf("rdsgate-%d-loops", loops), bin, loops)
	}
	if ref := os.Getenv("BENCH_BASELINE_REF"); ref != "" {
		old, err := buildAt(b, ref)
		if err != nil {
			b.Fatal(err)
		}
		addExtra("rdsgate@"+ref, old, 0)
	}

	var rows []row
	pgTarget := func(name, dsn string, pid int) target {
		return target{name: name, dsn: dsn, pid: pid}
	}
	targets := []target{
		pgTarget("direct", pgDSN(pg.Port, true, pg.CA.PEMFile), 0),
		pgTarget("rdsgate", pgDSN(pgPort, false, ""), pid),
		pgTarget("pgbouncer", pgDSN(bouncer, false, ""), bouncerPID),
		pgTarget("rdsgate-goroutines", pgDSN(oldPG, false, ""), oldPID),
		pgTarget("rdsgate-unix-socket", fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", sockDir, sockPort), pid),
		pgTarget("rdsgate-reuse", pgDSN(reusePort, false, ""), pid),
	}
	for _, e := range extras {
		targets = append(targets, pgTarget(e.name, pgDSN(e.pgPort, false, ""), e.pid))
	}
	for _, w := range []struct {
		key  string
		name string
		args []string
	}{
		{"select", fmt.Sprintf("pgbench select-only, %d clients", clients), []string{"-S"}},
		{"tpcb", fmt.Sprintf("pgbench TPC-B like, %d clients", clients), nil},
		{"connect", fmt.Sprintf("pgbench -C new connections/s, %d clients", clients), []string{"-S", "-C"}},
	} {
		if want(w.key) {
			rows = append(rows, measure(b, w.key, w.name, health, targets, func(tg target) (float64, float64) { return pgbench(b, tg.dsn, w.args...) })...)
		}
	}
	if want("sysbench") {
		myTarget := func(name string, port int, tls bool, pid int) target {
			ssl := map[bool]string{true: "on", false: "off"}[tls]
			return target{name: name, pid: pid, args: []string{"--mysql-host=127.0.0.1", "--mysql-port=" + itoa(port), "--mysql-ssl=" + ssl}}
		}
		mysqlTargets := []target{myTarget("direct", my.Port, true, 0), myTarget("rdsgate", myPort, false, pid),
			{name: "rdsgate-unix-socket", pid: pid, args: []string{"--mysql-socket=" + filepath.Join(sockDir, "my.sock"), "--mysql-ssl=off"}}}
		for _, e := range extras {
			mysqlTargets = append(mysqlTargets, myTarget(e.name, e.myPort, false, e.pid))
		}
		if hp, hpid := startHAProxy(b, my.Addr()); hp != 0 {
			mysqlTargets = append(mysqlTargets, myTarget("haproxy-tcp", hp, true, hpid))
		}
		rows = append(rows, measure(b, "sysbench", fmt.Sprintf("sysbench oltp_read_only, %d threads", clients), health, mysqlTargets,
			func(tg target) (float64, float64) { return sysbench(b, tg.args...) })...)
	}

	// Query cancels under load: success and latency, as the client sees them.
	var cancels []cancelResult
	if want("cancel") {
		for _, tg := range targets[:3] { // direct, rdsgate, pgbouncer
			cancels = append(cancels, cancelUnderLoad(b, tg.name, tg.dsn, targets[0].dsn, envInt("BENCH_CANCELS", 100)))
		}
	}

	// The table.
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-42s %-18s %12s %12s %10s %14s\n", "workload", "target", "tps", "latency ms", "vs direct", "proxy CPU/txn")
	direct := map[string]float64{}
	for _, r := range rows {
		if r.target == "direct" {
			direct[r.workload] = r.tps
		}
	}
	for _, r := range rows {
		cpu := "-"
		if r.cpuUS > 0 {
			cpu = fmt.Sprintf("%.1f µs", r.cpuUS)
		}
		fmt.Fprintf(&sb, "%-42s %-18s %12.1f %12.3f %10.2f %14s\n", r.workload, r.target, r.tps, r.latencyMS, r.tps/direct[r.workload], cpu)
	}
	for _, c := range cancels {
		fmt.Fprintf(&sb, "%-42s %-18s %5d/%-5d ok %6.2f ms p50 %6.2f ms p99 (%.2fx, %.2fx direct)\n", "cancel under select-only load", c.target,
			c.ok, c.trials, ms(c.p50), ms(c.p99), ms(c.p50)/ms(cancels[0].p50), ms(c.p99)/ms(cancels[0].p99))
	}
	var perConnRSS float64
	if want("idle") {
		var line string
		perConnRSS, line = idleMemory(b, pid, health, pgDSN(pgPort, false, ""))
		sb.WriteString("\n" + line)
	}
	b.Log(sb.String())
	fmt.Print(sb.String())
	for _, r := range rows {
		if r.target != "direct" {
			name := strings.NewReplacer(" ", "-", ",", "", "/", "-per-").Replace(r.workload)
			b.ReportMetric(r.tps/direct[r.workload], name+"_"+r.target+"/direct")
		}
	}
	if perConnRSS > 0 {
		b.ReportMetric(perConnRSS, "KiB/idle-conn")
	}
}

// idleMemory holds idleClients clients through the proxy (pid, with its
// metrics at health), idle, and reports what each costs it in memory.
func idleMemory(b *testing.B, pid int, health, dsn string) (perConnRSS float64, line string) {
	b.Helper()
	before := rssKiB(b, pid)
	heapBefore := metric(b, health, "go_memstats_heap_inuse_bytes") + metric(b, health, "go_memstats_stack_inuse_bytes")
	ctx := context.Background()
	conns := make([]*pgx.Conn, 0, idleClients)
	for range idleClients {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatalf("idle client %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	// Measure once the proxy counts every client as connected.
	active := 0.0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if active = metric(b, health, `rdsgate_proxy_connections_active{database="pg"}`); active >= float64(idleClients) {
			break
		}
	}
	after := rssKiB(b, pid)
	heapAfter := metric(b, health, "go_memstats_heap_inuse_bytes") + metric(b, health, "go_memstats_stack_inuse_bytes")
	for _, c := range conns {
		c.Close(ctx)
	}
	perConnRSS = float64(after-before) / float64(idleClients)
	perConnHeap := (heapAfter - heapBefore) / 1024 / float64(idleClients)
	return perConnRSS, fmt.Sprintf("idle clients held through rdsgate: %.0f; proxy RSS %d KiB -> %d KiB: %.1f KiB per idle connection (Go heap and stacks: %.1f KiB)\n",
		active, before, after, perConnRSS, perConnHeap)
}

// profileProxy writes a CPU profile of the proxy, taken over most of a run,
// to path (BENCH_PROFILE, with BENCH_PROFILE_WORKLOAD naming the run).
func profileProxy(health, path string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", health, max(1, seconds-2)))
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	_, _ = io.Copy(f, resp.Body)
	f.Close()
}
