package app

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rdsgate/rdsgate/internal/testenv"
	"github.com/rdsgate/rdsgate/proxyd"
	"github.com/rdsgate/rdsgate/test/rdsemu"
)

func TestProxyConfigure(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.json")
	r := run(t, "", "proxy", "configure", "--name", "orders", "--protocol", "postgres", "--uri", "orders.abc.us-east-1.rds.amazonaws.com:5432",
		"--region", "us-east-1", "--db-user", "app", "--output", conf, "--systemd", "--ca-bundle", "/etc/rds.pem")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	billing := []string{"proxy", "configure", "--name", "billing", "--protocol", "mysql", "--uri", "billing.abc.us-east-1.rds.amazonaws.com:3306",
		"--region", "us-east-1", "--assume-role-arn", "arn:aws:iam::123456789012:role/rdsgate/p/p-shard-001", "--output", conf}
	// An existing file is changed only when asked to.
	r = run(t, "", billing...)
	if want := conf + " exists (1 database: orders): add --merge to add or update billing in it, or name another --output"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("exit %d: %s, want %q", r.code, r.stderr, want)
	}
	r = run(t, "", append(billing, "--merge")...)
	if r.code != 0 || !strings.Contains(r.stdout, "billing                  mysql    127.0.0.1:15433") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	// Configuring orders again (a new db user) keeps its listener: its
	// clients connect there.
	r = run(t, "", "proxy", "configure", "--name", "orders", "--protocol", "postgres", "--uri", "orders.abc.us-east-1.rds.amazonaws.com:5432",
		"--region", "us-east-1", "--db-user", "app", "--db-user", "report", "--output", conf, "--merge")
	if r.code != 0 || !strings.Contains(r.stdout, "orders                   postgres 127.0.0.1:15432") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	pc, err := proxyd.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.Databases) != 2 || pc.Database("orders").Listen != "127.0.0.1:15432" || pc.Database("billing").AssumeRoleARN == "" {
		t.Fatalf("config: %+v", pc.Databases)
	}
	unit, err := os.ReadFile(filepath.Join(dir, "rdsgate-proxy.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/local/bin/rdsgate proxy start --config /etc/rdsgate/proxy.json\n") || !strings.Contains(string(unit), "KillSignal=SIGTERM") ||
		!strings.Contains(string(unit), "RuntimeDirectory=rdsgate") || !strings.Contains(string(unit), "ExecReload=") || !strings.Contains(string(unit), "User=rdsgate") {
		t.Fatalf("unit: %v\n%s", err, unit)
	}
	if users, err := os.ReadFile(filepath.Join(dir, "rdsgate.sysusers.conf")); err != nil || !strings.HasPrefix(string(users), "u rdsgate ") {
		t.Fatalf("sysusers: %v %q", err, users)
	}
	for _, args := range [][]string{
		{"--name", "x", "--protocol", "oracle", "--uri", "h:1", "--region", "r", "--output", conf},
		{"--name", "x", "--protocol", "mysql", "--uri", "h", "--region", "r", "--output", conf},
		{"--name", "x", "--protocol", "mysql", "--uri", "h:1", "--output", conf},
		{"--plan", "p.json", "--output", conf},
	} {
		if r := run(t, "", append([]string{"proxy", "configure"}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d %s", args, r.code, r.stderr)
		}
	}

	// From a plan: every database, the shard ones through their shard role.
	planFile := filepath.Join(dir, "plan.json")
	if r := run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--output", planFile); r.code != 0 {
		t.Fatal(r.stderr)
	}
	fromPlan := filepath.Join(dir, "fleet.json")
	if r := run(t, "", "proxy", "configure", "--plan", planFile, "--inventory", sampleInventory, "--output", fromPlan); r.code != 0 {
		t.Fatalf("from plan: %s", r.stderr)
	}
	fleet, err := proxyd.LoadConfig(fromPlan)
	if err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Databases []struct{ Name, Principal string }
	}
	data, _ := os.ReadFile(planFile)
	_ = json.Unmarshal(data, &plan)
	chained := 0
	for _, d := range plan.Databases {
		got := fleet.Database(d.Name)
		if got == nil {
			t.Fatalf("%s is missing from the proxy configuration", d.Name)
		}
		if (d.Principal != "rdsgate-proxy") != (got.AssumeRoleARN != "") {
			t.Fatalf("%s is on %s but the proxy assumes %q", d.Name, d.Principal, got.AssumeRoleARN)
		}
		if got.AssumeRoleARN != "" {
			chained++
		}
	}
	if len(fleet.Databases) != 508 || chained == 0 {
		t.Fatalf("%d databases, %d chained", len(fleet.Databases), chained)
	}
	// The fleet grows by a database that sorts first: no existing database's
	// port moves (clients would reach another database, perhaps of another
	// engine); the new one takes a free port.
	var inv struct {
		Databases []map[string]any `json:"databases"`
	}
	data, _ = os.ReadFile(sampleInventory)
	if err := json.Unmarshal(data, &inv); err != nil {
		t.Fatal(err)
	}
	added := map[string]any{}
	for k, v := range inv.Databases[0] {
		added[k] = v
	}
	added["name"], added["identifier"], added["resource_id"] = "aaa-first", "aaa-first", "cluster-AAAAAAAAAAAAAAAAAAAAAAAAAA"
	inv.Databases = append(inv.Databases, added)
	grown := filepath.Join(dir, "grown.json")
	writeJSONFile(t, grown, inv)
	grownPlan := filepath.Join(dir, "grown-plan.json")
	if r := run(t, "", "shards", "plan", "--inventory", grown, "--base-role", "rdsgate-proxy", "--previous", planFile, "--output", grownPlan); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = run(t, "", "proxy", "configure", "--plan", grownPlan, "--inventory", grown, "--output", fromPlan)
	if r.code != 0 || r.stderr != "Kept the listener ports of 508 databases from "+fromPlan+" (a port never moves; --port NAME=PORT pins one).\n" {
		t.Fatalf("grown fleet: exit %d %s", r.code, r.stderr)
	}
	regrown, err := proxyd.LoadConfig(fromPlan)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fleet.Databases {
		if got := regrown.Database(d.Name); got == nil || got.Listen != d.Listen {
			t.Fatalf("%s moved from %s to %+v", d.Name, d.Listen, got)
		}
	}
	if got := regrown.Database("aaa-first").Listen; got != "127.0.0.1:15940" {
		t.Fatalf("the new database listens on %s, want the first free port 15940", got)
	}
	// Pins: a port for a database, and a pin that would take another's port.
	first := fleet.Databases[0]
	r = run(t, "", "proxy", "configure", "--plan", grownPlan, "--inventory", grown, "--output", fromPlan, "--port", "aaa-first=15432")
	if r.code != 2 || !strings.Contains(r.stderr, "port 15432 is pinned for aaa-first, but "+first.Name+" listens on it already: clients of "+first.Name+" would reach aaa-first") {
		t.Fatalf("conflicting pin: exit %d %s", r.code, r.stderr)
	}
	if r = run(t, "", "proxy", "configure", "--plan", grownPlan, "--inventory", grown, "--output", fromPlan, "--port", "aaa-first=20000"); r.code != 0 {
		t.Fatalf("pin: exit %d %s", r.code, r.stderr)
	}
	if pinned, _ := proxyd.LoadConfig(fromPlan); pinned.Database("aaa-first").Listen != "127.0.0.1:20000" || pinned.Database(first.Name).Listen != first.Listen {
		t.Fatalf("after the pin: %s, %s", pinned.Database("aaa-first").Listen, pinned.Database(first.Name).Listen)
	}
	if r = run(t, "", "proxy", "configure", "--plan", grownPlan, "--inventory", grown, "--output", fromPlan, "--port", "aaa-first"); r.code != 2 ||
		!strings.Contains(r.stderr, `--port "aaa-first": write NAME=PORT, for example --port orders=15432`) {
		t.Fatalf("malformed pin: exit %d %s", r.code, r.stderr)
	}
	// Sockets, where libpq (host=/run/rdsgate port=N) and mysql --socket look.
	sockets := filepath.Join(dir, "sockets.json")
	if r := run(t, "", "proxy", "configure", "--plan", planFile, "--inventory", sampleInventory, "--listen-host", "unix:/run/rdsgate", "--output", sockets); r.code != 0 {
		t.Fatalf("sockets: %s", r.stderr)
	}
	sc, err := proxyd.LoadConfig(sockets)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range sc.Databases {
		want := regexp.MustCompile(`^unix:/run/rdsgate/\.s\.PGSQL\.[0-9]+$`)
		if d.Protocol == proxyd.ProtocolMySQL {
			want = regexp.MustCompile(`^unix:/run/rdsgate/` + regexp.QuoteMeta(d.Name) + `\.sock$`)
		}
		if !want.MatchString(d.Listen) || seen[d.Listen] {
			t.Fatalf("%s (%s) listens on %s", d.Name, d.Protocol, d.Listen)
		}
		seen[d.Listen] = true
	}
}

// TestProxyStartAndSignals runs the real binary in front of PostgreSQL
// behind the RDS emulator: it serves psql, drains on SIGTERM and exits 0,
// and a second signal ends it at once.
func TestProxyStartAndSignals(t *testing.T) {
	bin := testenv.BuildRdsgate(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	keys := &rdsemu.Keys{}
	keys.Add("AKIDCLITEST", "cli-test-secret", "")
	emu := rdsemu.Postgres(t, pg, rdsemu.Options{Keys: keys})
	pg.SQL(t, "postgres", "CREATE USER app; GRANT rds_iam TO app")
	dir := t.TempDir()
	conf := filepath.Join(dir, "proxy.json")
	port := strconv.Itoa(testenv.FreePort(t))
	if r := run(t, "", "proxy", "configure", "--name", "pg", "--protocol", "postgres", "--uri", emu.Endpoint, "--region", "us-east-1",
		"--listen", "127.0.0.1:"+port, "--ca-bundle", emu.CAFile, "--health-address", "127.0.0.1:0", "--output", conf); r.code != 0 {
		t.Fatal(r.stderr)
	}
	var logs *testenv.LockedBuffer // the running proxy's
	// waitLines waits for the running proxy to have logged line n times.
	waitLines := func(line string, n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for strings.Count(logs.String(), line) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q (%d) in the proxy's log:\n%s", line, n, logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "proxy", "start", "--config", conf)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDCLITEST", "AWS_SECRET_ACCESS_KEY=cli-test-secret", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
		logs = &testenv.LockedBuffer{}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Ready when this child says so (not whatever answers the port).
		waitLines("rdsgate proxy started", 1)
		return cmd
	}
	dsn := "host=127.0.0.1 port=" + port + " user=app dbname=postgres sslmode=disable"
	cmd := start()
	out, err := exec.Command("psql", "-X", "-A", "-t", dsn, "-c", "select 'through the proxy'").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "through the proxy" {
		t.Fatalf("psql: %v %s\n%s", err, out, logs)
	}
	// SIGHUP reloads the configuration and reopens the audit log
	// (logrotate); an open session goes on, a bad file changes nothing.
	ctx := context.Background()
	held, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	stillThere := func(when string) {
		t.Helper()
		var n int
		if err := held.QueryRow(ctx, "select 1").Scan(&n); err != nil {
			t.Fatalf("the open session %s: %v\n%s", when, err, logs)
		}
	}
	pc, err := proxyd.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.jsonl")
	pc.AuditLog, pc.Databases[0].DBUsers = audit, []string{"reporting"}
	writeJSONFile(t, conf, pc)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLines("configuration reloaded (SIGHUP)", 1)
	stillThere("after a reload")
	if out, err := exec.Command("psql", "-X", dsn, "-c", "select 1").CombinedOutput(); err == nil || !strings.Contains(string(out), `database user "app" may not connect to pg`) {
		t.Fatalf("a new session after db_users changed: %v %s", err, out)
	}
	if err := os.Rename(audit, audit+".1"); err != nil {
		t.Fatalf("the audit log was not opened on reload: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLines("configuration reloaded (SIGHUP)", 2)
	_, _ = exec.Command("psql", "-X", dsn, "-c", "select 1").CombinedOutput()
	if rotated, _ := os.ReadFile(audit); !strings.Contains(string(rotated), `"event":"denied"`) {
		t.Fatalf("after logrotate's SIGHUP the audit log is %q", rotated)
	}
	if err := os.WriteFile(conf, []byte(`{"databases": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLines("configuration not reloaded (SIGHUP)", 1)
	stillThere("after a bad reload")
	held.Close(ctx)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM with nothing open: %v\n%s", err, logs)
	}
	pc.AuditLog, pc.Databases[0].DBUsers = "", nil
	writeJSONFile(t, conf, pc)
	if !strings.Contains(logs.String(), "rdsgate proxy stopped") || strings.Contains(logs.String(), "cli-test-secret") || strings.Contains(logs.String(), "X-Amz-Signature") {
		t.Fatalf("logs:\n%s", logs)
	}

	// A session that never ends: the first SIGTERM drains (up to 30s), the
	// second one ends the proxy at once with 143.
	cmd = start()
	hold := exec.Command("psql", "-X", dsn, "-c", "select pg_sleep(60)")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Process.Kill()
	// Wait for events, not for time: the session has started, then the
	// drain has begun with it open.
	waitLines(`"msg":"session started"`, 1)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitLines(`"open":1`, 1)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	var ee *exec.ExitError
	// 143, not the 0 of a drain that ran out: the second signal ended it.
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("second SIGTERM: %v\n%s", err, logs)
	}

	// A broken configuration is a usage error.
	if err := os.WriteFile(conf, []byte(`{"databases":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", "proxy", "start", "--config", conf); r.code != 2 || !strings.Contains(r.stderr, "ca_bundle is required") {
		t.Fatalf("bad config: %d %s", r.code, r.stderr)
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdUnitVerifies writes the unit for a gateway with an audit log and
// Unix sockets, and has systemd-analyze verify it: no warning, and the
// sandbox leaves writable exactly the directories the proxy writes to.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: scripts/install-deps.sh installs Debian's systemd package")
	}
	bin := testenv.BuildRdsgate(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "edge.json")
	writeJSONFile(t, conf, proxyd.Config{Region: "us-east-1", CABundle: "/etc/rdsgate/global-bundle.pem", AuditLog: "/var/lib/rdsgate-audit/audit.jsonl",
		Databases: []proxyd.Database{{Name: "ledger", Protocol: "mysql", Endpoint: "ledger.abc.us-east-1.rds.amazonaws.com:3306", Region: "us-east-1", Listen: "unix:/srv/sockets/ledger.sock"}}})
	r := run(t, "", "proxy", "configure", "--name", "orders", "--protocol", "postgres", "--uri", "orders.abc.us-east-1.rds.amazonaws.com:5432",
		"--region", "us-east-1", "--output", conf, "--merge", "--systemd", "--binary", bin, "--install-config", "/etc/rdsgate/edge.json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"sudo install -m 0644 " + conf + " /etc/rdsgate/edge.json",
		"/usr/lib/sysusers.d/rdsgate.conf && sudo systemd-sysusers",
		"/etc/systemd/system/rdsgate-proxy.service",
		"sudo rdsgate proxy ca-bundle --output /etc/rdsgate/global-bundle.pem   # the RDS CA bundle, from https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("install commands lack %q:\n%s", want, r.stdout)
		}
	}
	unitFile := filepath.Join(dir, "rdsgate-proxy.service")
	unit, _ := os.ReadFile(unitFile)
	if !strings.Contains(string(unit), "ReadWritePaths=/srv/sockets /var/lib/rdsgate-audit\n") || !strings.Contains(string(unit), "--config /etc/rdsgate/edge.json\n") {
		t.Fatalf("unit:\n%s", unit)
	}
	out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, unit)
	}
	// The check can fail: a unit with a key systemd does not know.
	bad := filepath.Join(t.TempDir(), "rdsgate-proxy.service")
	if err := os.WriteFile(bad, bytes.Replace(unit, []byte("LimitNOFILE"), []byte("LimitNOFILES"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", bad).CombinedOutput(); !bytes.Contains(out, []byte("Unknown key")) {
		t.Fatalf("a broken unit passed systemd-analyze verify: %s", out)
	}
}

// TestProxyCABundle fetches a CA bundle with the real binary from a local
// HTTPS server (trusted through SSL_CERT_FILE, as a corporate CA would be),
// and a proxy whose bundle is missing says where it comes from.
func TestProxyCABundle(t *testing.T) {
	bin := testenv.BuildRdsgate(t)
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir)
	bundle, _ := os.ReadFile(ca.PEMFile)
	var requests atomic.Int32
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.ServeContent(w, r, "global-bundle.pem", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), bytes.NewReader(bundle))
	}))
	defer ts.Close()
	trust := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(trust, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "global-bundle.pem")
	fetch := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"proxy", "ca-bundle", "--url", ts.URL + "/global/global-bundle.pem", "--output", out}, args...)...)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+trust)
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(b), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(b), 0
	}
	if s, code := fetch(); code != 0 || !strings.Contains(s, "Wrote "+out+": 1 CA certificate from "+ts.URL) {
		t.Fatalf("exit %d: %s", code, s)
	}
	if s, code := fetch(); code != 0 || !strings.Contains(s, "younger than --max-age 24h0m0s; kept without asking") || requests.Load() != 1 {
		t.Fatalf("exit %d (%d requests): %s", code, requests.Load(), s)
	}
	if s, code := fetch("--max-age", "0"); code != 0 || !strings.Contains(s, "is current") || requests.Load() != 2 {
		t.Fatalf("exit %d (%d requests): %s", code, requests.Load(), s)
	}
	if s, code := fetch("--sha256", "abc"); code != 2 || !strings.Contains(s, `--sha256 "abc" must be 64 hex digits`) {
		t.Fatalf("exit %d: %s", code, s)
	}

	// A proxy whose bundle is missing names the URL and the command.
	conf := filepath.Join(dir, "proxy.json")
	missing := filepath.Join(dir, "nowhere", "global-bundle.pem")
	writeJSONFile(t, conf, proxyd.Config{Region: "us-east-1", CABundle: missing, HealthAddress: "127.0.0.1:0",
		Databases: []proxyd.Database{{Name: "orders", Protocol: "postgres", Endpoint: "orders.abc.us-east-1.rds.amazonaws.com:5432", Region: "us-east-1", Listen: "127.0.0.1:0"}}})
	want := "ca_bundle " + missing + " does not exist: the RDS CA bundle is published at https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem; fetch it with: rdsgate proxy ca-bundle --output " + missing
	if r := run(t, "", "proxy", "start", "--config", conf); r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("exit %d: %s\nwant %s", r.code, r.stderr, want)
	}
}

// TestProxyConfigureGateway: the refusals of proxy configure --gateway, each
// with what to add, and a gateway made from a shard plan in one command.
func TestProxyConfigureGateway(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "gateway.json")
	planFile := filepath.Join(dir, "plan.json")
	if r := run(t, "", "shards", "plan", "--inventory", sampleInventory, "--base-role", "rdsgate-proxy", "--output", planFile); r.code != 0 {
		t.Fatal(r.stderr)
	}
	base := []string{"proxy", "configure", "--plan", planFile, "--inventory", sampleInventory, "--output", conf}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert configures a gateway: add --gateway"},
		{[]string{"--gateway", "--tls-cert", "c.pem"}, "--gateway needs --tls-cert and --tls-key"},
		{[]string{"--gateway", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "--gateway needs a way for clients to prove who they are: --iam-audience NAME"},
		{[]string{"--gateway", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--client-ca", "ca.pem", "--sts-endpoint", "https://sts.example"}, "--sts-endpoint checks IAM identity tokens: add --iam-audience"},
		{[]string{"--gateway", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--iam-audience", "prod gateway"}, "gateway.iam: audience must name this gateway"},
	} {
		if r := run(t, "", append(base, c.args...)...); r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d %s, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if _, err := os.Stat(conf); err == nil {
		t.Fatal("a refused configure wrote the file")
	}
	r := run(t, "", append(base, "--gateway", "--tls-cert", "/etc/rdsgate/gateway.pem", "--tls-key", "/etc/rdsgate/gateway.key", "--iam-audience", "prod-db-gateway")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Gateway: PostgreSQL on :5432, MySQL on :3306, API on :8443") ||
		!strings.Contains(r.stdout, "Write the RBAC file /etc/rdsgate/rbac.json before starting") {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	pc, err := proxyd.LoadConfig(conf)
	if err != nil {
		t.Fatal(err)
	}
	if g := pc.Gateway; g == nil || g.IAM == nil || g.IAM.Audience != "prod-db-gateway" || g.RBACFile != "/etc/rdsgate/rbac.json" || len(pc.Databases) == 0 {
		t.Fatalf("gateway: %+v", pc.Gateway)
	}
	// A gateway faces strangers: the per-source bound on pending logins is
	// the gateway's, not the sidecar's.
	if pc.MaxPendingLoginsPerSource != proxyd.DefaultMaxPendingLoginsPerSource {
		t.Fatalf("max_pending_logins_per_source %d, want %d", pc.MaxPendingLoginsPerSource, proxyd.DefaultMaxPendingLoginsPerSource)
	}
	for _, d := range pc.Databases {
		if d.Listen != "" {
			t.Fatalf("%s has its own listener %s beside the gateway", d.Name, d.Listen)
		}
	}
	// The example files in examples/gateway are what this writes, and load.
	if _, err := proxyd.LoadConfig("../../../examples/gateway/gateway.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := proxyd.LoadRBAC("../../../examples/gateway/rbac.json"); err != nil {
		t.Fatal(err)
	}
}

// TestProxyConfigureKubernetesRefuses: manifests are for a gateway fleet
// with an image; the flags that shape them need --kubernetes.
func TestProxyConfigureKubernetesRefuses(t *testing.T) {
	dir := t.TempDir()
	base := []string{"proxy", "configure", "--name", "orders", "--protocol", "postgres", "--uri", "orders.abc.us-east-1.rds.amazonaws.com:5432",
		"--region", "us-east-1", "--output", filepath.Join(dir, "proxy.json")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kubernetes", filepath.Join(dir, "k8s"), "--image", "rdsgate:1"}, "serves as a gateway"},
		{[]string{"--gateway", "--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca", "--kubernetes", filepath.Join(dir, "k8s")}, "need --image"},
		{[]string{"--image", "rdsgate:1"}, "--image shapes the Kubernetes manifests: add --kubernetes DIR"},
		{[]string{"--gateway", "--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca", "--kubernetes", filepath.Join(dir, "k8s"), "--image", "x",
			"--iam-role-arn", "arn:aws:iam::123456789012:user/u"}, "is not a role ARN"},
	} {
		os.Remove(filepath.Join(dir, "proxy.json"))
		r := run(t, "", append(base, tc.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
		for _, f := range []string{"k8s", "proxy.json"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%v: refused, but wrote %s", tc.args, f)
			}
		}
	}
}

// TestProxyConfigureAuto: --auto writes a configuration the proxy loads,
// with no databases of its own and the automatic mode settings given; what
// does not go with it is refused before anything is written.
func TestProxyConfigureAuto(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "proxy.json")
	r := run(t, "", "proxy", "configure", "--auto", "--base-role", "arn:aws:iam::123456789012:role/rdsgate-proxy", "--region", "eu-west-1",
		"--auto-regions", "eu-west-1,eu-central-1", "--auto-tag", "team=payments", "--auto-tag", "rdsgate", "--auto-types", "rds,aurora,redshift",
		"--auto-interval", "2m", "--enable-iam-auth", "--first-port", "20000", "--output", out)
	if r.code != 0 || !strings.Contains(r.stdout, "automatic mode for arn:aws:iam::123456789012:role/rdsgate-proxy in eu-west-1, eu-central-1, every 2m0s") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pc, err := proxyd.LoadConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	a := pc.Auto
	if a == nil || len(pc.Databases) != 0 || a.Tags["team"] != "payments" || a.Tags["rdsgate"] != "" || len(a.Tags) != 2 || strings.Join(a.Types, ",") != "rds,aurora,redshift" ||
		time.Duration(a.Interval) != 2*time.Minute || !a.EnableIAMAuth || a.FirstPort != 20000 || strings.Join(a.Regions, ",") != "eu-west-1,eu-central-1" {
		t.Fatalf("auto: %+v", a)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auto", "--region", "eu-west-1"}, "--auto needs --base-role ARN"},
		{[]string{"--auto", "--base-role", "arn:aws:iam::123456789012:role/p", "--region", "eu-west-1", "--name", "orders"}, "cannot specify --auto and --name"},
		{[]string{"--auto", "--base-role", "arn:aws:iam::123456789012:role/p", "--region", "eu-west-1", "--auto-types", "dynamodb"}, `"dynamodb" is not rds, aurora`},
		{[]string{"--auto-tag", "team=x", "--name", "orders", "--protocol", "postgres", "--uri", "h:5432", "--region", "eu-west-1"}, "--auto-tag configures automatic mode: add --auto"},
	} {
		path := filepath.Join(dir, "refused.json")
		r := run(t, "", append([]string{"proxy", "configure", "--output", path}, tc.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%v: refused, but wrote the file", tc.args)
		}
	}
	// An existing file is not overwritten by a whole automatic configuration.
	if r := run(t, "", "proxy", "configure", "--auto", "--base-role", "arn:aws:iam::123456789012:role/p", "--region", "eu-west-1", "--output", out); r.code != ExitUsage ||
		!strings.Contains(r.stderr, "exists") {
		t.Fatalf("over an existing file: exit %d %s", r.code, r.stderr)
	}
}
